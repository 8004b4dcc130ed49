"""One validator for label maps, shared by ``nnUNet_genesis_evaluate`` and ``nnUNet_genesis_submission``.

Each check returns a list of faults (short texts that follow the file's path in a message, e.g.
"truncated: 1200 of the 8352 bytes its header announces"); an empty list means the file passed.

* **integrity** (:func:`naming_faults`, :func:`integrity_faults`): a ``.gz`` file really is
  gzip-compressed, and a NIfTI file
  holds every voxel byte its header announces and its gzip stream ends properly
  (``nnunet_genesis.io.integrity.nifti_truncation``). SimpleITK/ITK silently zero-fill a truncated file,
  so without this check a cut download scores (or is submitted) as if it were complete.
* **header** (:func:`header_faults`): 3-D, one component per voxel, and a pixel type fit for labels.
* **dtype policy**: a *prediction* must be stored with an integer pixel type (nnU-Net writes uint8; a
  float file almost always means probabilities or an interpolating resampler were saved by mistake,
  and casting is one line for the user, guessing is unsafe for us) -- the same rule for scoring and for
  the submission. A *reference* (ground truth we are given and do not own, e.g. a Decathlon
  ``labelsTr`` file stored as float) may be float when every value is finite and integral; it is then
  cast losslessly.
* **geometry** (:func:`geometry_faults`): the same voxel grid as the reference image (the test image
  for a submission, the reference label map for scoring): size equal; spacing and origin equal within
  ``GEOMETRY_TOLERANCE_MM`` (absolute, mm); direction cosines within ``DIRECTION_TOLERANCE``.
* **labels** (:func:`label_value_faults`): no negative value, and, when the allowed set is known (the
  task's labels), no value outside it.

Tolerance policy (one for both commands, chosen as follows). NIfTI stores spacing and origin as float32:
a coordinate of 500 mm is kept to ~3e-5 mm, and the quaternion round trip of a direction matrix adds
~1e-7. An honest prediction copies its grid from the image it was predicted on, so its geometry differs
from that image's by that round-off at most. ``GEOMETRY_TOLERANCE_MM = 1e-3`` (a thousandth of a
millimetre, ~30x the float32 round-off at 500 mm, ~1/500 of the finest Decathlon voxel) and
``DIRECTION_TOLERANCE = 1e-4`` (an angle of ~0.006 degrees: 0.05 mm at 500 mm from the origin) pass
every honest copy and refuse any real resampling or shift. Absolute rather than relative: a relative
tolerance (the submission used numpy.isclose rtol=atol=1e-4 before) lets the allowed origin error grow
with the distance of the origin from 0 (0.05 mm at 500 mm) for no physical reason.
"""
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from nnunet_genesis.io.integrity import image_file_problem

GEOMETRY_TOLERANCE_MM = 1e-3
DIRECTION_TOLERANCE = 1e-4

GZIP_MAGIC = b"\x1f\x8b"

INTEGER_PIXEL_IDS = frozenset([sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
                               sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64])
FLOAT_PIXEL_IDS = frozenset([sitk.sitkFloat32, sitk.sitkFloat64])

PREDICTION = "prediction"
REFERENCE = "reference"


class LabelMapError(ValueError):
    """A label map that fails the validator; the message names the file and every fault."""

    def __init__(self, path: str, faults: Sequence[str]):
        self.path, self.faults = path, list(faults)
        super().__init__("%s: %s" % (path, "; ".join(self.faults)))

    def __reduce__(self):   # picklable, so that worker processes can raise it
        return (type(self), (self.path, self.faults))


@dataclass(frozen=True)
class ImageHeader:
    """Geometry and pixel type of an image file; ``direction`` is row-major, dimension x dimension."""
    dimension: int
    size: Tuple[int, ...]
    spacing: Tuple[float, ...]
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]
    pixel_id: int
    components: int

    @property
    def pixel_type(self) -> str:
        return sitk.GetPixelIDValueAsString(self.pixel_id)

    def first_three_dimensions(self) -> "ImageHeader":
        """The spatial part of a 4-D Decathlon image (x, y, z, modality); a 3-D header is returned as is."""
        if self.dimension <= 3:
            return self
        n = self.dimension
        direction = tuple(self.direction[row * n + col] for row in range(3) for col in range(3))
        return ImageHeader(3, self.size[:3], self.spacing[:3], self.origin[:3], direction,
                           self.pixel_id, self.components)

    @classmethod
    def of_image(cls, image) -> "ImageHeader":
        return cls(image.GetDimension(), tuple(image.GetSize()), tuple(image.GetSpacing()),
                   tuple(image.GetOrigin()), tuple(image.GetDirection()), image.GetPixelID(),
                   image.GetNumberOfComponentsPerPixel())


def read_header(path: str) -> ImageHeader:
    """Geometry and pixel type from the file header only (no voxel data is read).
    Raises RuntimeError when SimpleITK cannot read the file."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return ImageHeader(reader.GetDimension(), tuple(reader.GetSize()), tuple(reader.GetSpacing()),
                       tuple(reader.GetOrigin()), tuple(reader.GetDirection()), reader.GetPixelID(),
                       reader.GetNumberOfComponents())


def first_line(error: Exception) -> str:
    """The informative line of an ITK error (its last non-empty line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join("%.6g" % v for v in np.ravel(values)) + ")"


# ------------------------------------------------------------------------------------- the checks

NOT_NIFTI = "not a NIfTI-1/NIfTI-2 header"


def naming_faults(path: str) -> List[str]:
    """A '.gz' name on a file that is not gzip-compressed (SimpleITK reads it, gzip and nibabel do not)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
    except OSError as error:
        return ["cannot be opened (%s)" % (error.strerror or error)]
    if path.lower().endswith(".gz") and magic != GZIP_MAGIC:
        return ["is named .gz but is not gzip-compressed"]
    return []


def integrity_faults(path: str) -> List[str]:
    """The file is complete: a NIfTI file holds every voxel byte its header announces and its gzip stream
    ends properly (nnunet_genesis.io.integrity.nifti_truncation). A file that is no NIfTI at all is left to
    the image reader, whose message says what it is."""
    problem = image_file_problem(path)
    return [] if problem is None or problem == NOT_NIFTI else [problem]


def header_faults(header: ImageHeader, role: str = PREDICTION) -> List[str]:
    """3-D, one component, and a pixel type fit for a label map of this ``role`` (see the dtype policy)."""
    faults = []
    if header.dimension != 3:
        faults.append("is %d-D; a label map must be 3-D" % header.dimension)
    if header.components != 1:
        faults.append("has %d components per voxel; a label map has one" % header.components)
    allowed = INTEGER_PIXEL_IDS if role == PREDICTION else INTEGER_PIXEL_IDS | FLOAT_PIXEL_IDS
    if header.pixel_id not in allowed:
        faults.append("pixel type is %s; %s label maps must be stored with an integer type (e.g. uint8)"
                      % (header.pixel_type, role))
    return faults


def geometry_faults(header: ImageHeader, reference: ImageHeader, what: str = "the reference") -> List[str]:
    """How the grid of ``header`` differs from ``reference``'s (first three dimensions of a 4-D image):
    size exactly, spacing/origin within GEOMETRY_TOLERANCE_MM, direction within DIRECTION_TOLERANCE."""
    if header.dimension != 3:
        return []       # reported by header_faults
    reference = reference.first_three_dimensions()
    if reference.dimension != 3:
        return ["cannot be compared with a %d-D image (%s)" % (reference.dimension, what)]
    faults = []
    if tuple(header.size) != tuple(reference.size):
        faults.append("size %s differs from %s's %s" % ("x".join(map(str, header.size)), what,
                                                         "x".join(map(str, reference.size))))
    for name, tolerance in (("spacing", GEOMETRY_TOLERANCE_MM), ("origin", GEOMETRY_TOLERANCE_MM),
                            ("direction", DIRECTION_TOLERANCE)):
        mine, theirs = np.array(getattr(header, name), float), np.array(getattr(reference, name), float)
        if mine.shape != theirs.shape or not np.all(np.abs(mine - theirs) <= tolerance):
            faults.append("%s %s differs from %s's %s" % (name, _fmt(mine), what, _fmt(theirs)))
    return faults


def label_value_faults(voxels: np.ndarray, allowed_labels: Optional[Iterable[int]] = None) -> List[str]:
    """Negative values, non-integral floats, and (when ``allowed_labels`` is given) values outside the set."""
    if voxels.dtype.kind == "f":
        bad = ~np.isfinite(voxels) | (voxels != np.round(voxels))
        if bad.any():
            return ["holds %d non-integer or non-finite value(s) (e.g. %r); a label map holds integer labels"
                    % (int(bad.sum()), float(voxels[bad].ravel()[0]))]
    if voxels.size and voxels.dtype.kind in "if" and voxels.min() < 0:
        return ["holds negative label value(s) (min %d)" % int(voxels.min())]
    if allowed_labels is None:
        return []
    allowed = np.array(sorted(int(v) for v in allowed_labels))
    # isin against a handful of labels is a few comparisons per voxel, cheaper than np.unique's sort
    outside = ~np.isin(voxels, allowed)
    count = int(outside.sum())
    if count == 0:
        return []
    bad_values = np.unique(voxels[outside])
    return ["label value(s) %s in %d voxel(s) are not in the task's label set %s"
            % (", ".join(str(int(v)) for v in bad_values.tolist()), count,
               "{" + ", ".join(str(v) for v in allowed.tolist()) + "}")]


# ------------------------------------------------------------------------------------- one call

def validate_label_map(path: str, *, role: str = PREDICTION, grid: Optional[ImageHeader] = None,
                       grid_name: str = "the reference", allowed_labels: Optional[Iterable[int]] = None,
                       read_voxels: bool = True) -> Tuple[List[str], Optional[np.ndarray], Optional[object]]:
    """Every check of one label map: (faults, voxel array (z, y, x; integer) or None, SimpleITK image or None).

    ``grid``: the header whose voxel grid the map must share (None: no geometry check). ``allowed_labels``:
    the label set (None: only non-negative integers are required). ``read_voxels=False`` stops after the
    header checks (no voxel data is decoded; the integrity check still reads the file through).
    """
    faults = naming_faults(path)
    damage = integrity_faults(path)
    if damage or (faults and faults[0].startswith("cannot be opened")):
        return faults + damage, None, None        # a damaged file's header and voxels mean nothing
    try:
        header = read_header(path)
    except RuntimeError as error:
        return faults + ["cannot be read as an image (%s)" % first_line(error)], None, None
    faults += header_faults(header, role)
    if grid is not None:
        faults += geometry_faults(header, grid, grid_name)
    if faults or not read_voxels:
        return faults, None, None
    try:
        image = sitk.ReadImage(path)
    except RuntimeError as error:
        return ["cannot be read as an image (%s)" % first_line(error)], None, None
    voxels = sitk.GetArrayFromImage(image)
    faults = label_value_faults(voxels, allowed_labels)
    if faults:
        return faults, None, image
    if voxels.dtype.kind == "f":
        voxels = voxels.astype(np.int32)     # lossless: every value was checked to be integral
    return [], voxels, image


def read_label_map(path: str, *, role: str = PREDICTION, grid: Optional[ImageHeader] = None,
                   grid_name: str = "the reference", allowed_labels: Optional[Iterable[int]] = None):
    """(voxel array, SimpleITK image) of a label map that passes every check; LabelMapError otherwise."""
    faults, voxels, image = validate_label_map(path, role=role, grid=grid, grid_name=grid_name,
                                               allowed_labels=allowed_labels)
    if faults:
        raise LabelMapError(path, faults)
    return voxels, image

