"""The Decathlon leaderboard's metrics (Dice, Normalised Surface Distance) computed locally."""
