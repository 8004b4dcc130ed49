"""How far a pretraining checkpoint's parameters sit from a fresh nnU-Net network's, in scale (issue #18).

    python benchmarks/study18/checkpoint_scales.py CHECKPOINT [CHECKPOINT ...]

Two suspects for a pretrained start that learns a structure slower than a fresh one, both visible without
training: (1) instance-norm affine parameters moved away from a fresh network's (weight 1, bias 0), e.g.
negative biases that park units in LeakyReLU's flat part; (2) convolution weights whose norm grew or shrank
against nnU-Net's He initialisation (``InitWeights_He(1e-2)``: kaiming normal, negative slope a = 0.01, so a
weight of fan-in n has standard deviation sqrt(2 / ((1 + a^2) n)) and a tensor of N entries an expected norm
sqrt(N) times that). With an instance norm after every convolution the output does not depend on a weight's
scale, but SGD's effective step does (it scales as 1 / norm^2): a grown norm would learn slower.

Prints one row per tensor: instance norms' mean, sd and range; convolutions' norm over the He expectation.
Reads the checkpoint with the package's restricted loader (no unpickling of arbitrary objects).
"""
import argparse
import math

from nnunet_genesis.checkpoints.files import load_state_dict_from_checkpoint

HE_NEGATIVE_SLOPE = 1e-2   # nnU-Net's InitWeights_He(neg_slope=1e-2)


def he_norm(shape) -> float:
    """Expected Frobenius norm of a He-initialised tensor of this shape (out, in, *kernel)."""
    fan_in = 1
    for d in shape[1:]:
        fan_in *= d
    count = fan_in * shape[0]
    return math.sqrt(2.0 / ((1 + HE_NEGATIVE_SLOPE ** 2) * fan_in)) * math.sqrt(count)


def main(paths):
    for path in paths:
        state = load_state_dict_from_checkpoint(path)
        print("\n%s\n" % path)
        print("| tensor | shape | what | value |")
        print("|---|---|---|---|")
        for key, value in state.items():
            value = value.float()
            if "instnorm" in key:
                print("| %s | %s | instance norm, fresh = %s | mean %+.3f, sd %.3f, [%+.3f, %+.3f] |" % (
                    key, tuple(value.shape), "1" if key.endswith("weight") else "0", value.mean(), value.std(),
                    value.min(), value.max()))
            elif value.dim() == 5 and key.endswith("weight"):
                print("| %s | %s | convolution norm / He init | %.2f |" % (
                    key, tuple(value.shape), value.norm().item() / he_norm(tuple(value.shape))))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="nnU-Net v1 checkpoints (model_final_checkpoint.model; "
                                                       "v1's Generic_UNet names, the ones measured)")
    main(parser.parse_args().checkpoints)
