"""Sources of benchmarks/real_tasks.py: files inside installed Debian packages and Python wheels, found
without importing the packages, put on axis-aligned grids; Colin27's AAL atlas carried to each MRI head by
an affine registration; brain masks; the InVesalius head CT read from its project file. See
docs/real_tasks.md.
"""
import importlib.util
import os
import sys
import zlib

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from nnunet_genesis.io.atomic import atomic_write  # noqa: E402

MRICRON = "/usr/share/mricron/templates"
ITK_DATA = "/usr/share/doc/insighttoolkit5-examples/examples/Data"
INVESALIUS = "/usr/share/doc/invesalius-examples/examples/Cranium.inv3"


class SourceMissing(Exception):
    pass


def package_file(package, *parts):
    """A data file inside an installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing("package %s is not installed (pip install --no-deps %s)" % (package, package))
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    if not os.path.isfile(path):
        raise SourceMissing("%s: not found in the installed %s" % (path, package))
    return path


def system_file(path, debian_package):
    if not os.path.isfile(path):
        raise SourceMissing("%s: not found (apt-get install %s)" % (path, debian_package))
    return path


def read(path, pixel=sitk.sitkFloat32):
    return sitk.ReadImage(path, pixel)


def write_image(image, path):
    atomic_write(path, lambda tmp: sitk.WriteImage(image, tmp, True))


def canonical(image, spacing, interpolator=sitk.sitkLinear):
    """``image`` resampled onto an axis-aligned grid (identity direction) of ``spacing`` mm covering it."""
    size = np.array(image.GetSize())
    corners = [image.TransformContinuousIndexToPhysicalPoint([float(c) for c in np.array(bits) * (size - 1)])
               for bits in np.ndindex(2, 2, 2)]
    low, high = np.min(corners, 0), np.max(corners, 0)
    spacing = np.broadcast_to(np.asarray(spacing, float), (3,))
    new_size = [int(n) for n in np.floor((high - low) / spacing) + 1]
    if interpolator != sitk.sitkNearestNeighbor and min(image.GetSpacing()) < 0.75 * spacing.min():
        image = sitk.SmoothingRecursiveGaussian(image, [0.4 * float(s) for s in spacing])  # anti-alias
    return sitk.Resample(image, new_size, sitk.Transform(), interpolator, tuple(low), tuple(spacing),
                         (1, 0, 0, 0, 1, 0, 0, 0, 1), 0.0, image.GetPixelID())


def affine_registration(fixed, moving):
    """Affine transform mapping ``fixed`` points into ``moving`` (Mattes mutual information, 3 levels)."""
    shrink = lambda im: sitk.Shrink(im, [2 if s < 1.5 else 1 for s in im.GetSpacing()])  # noqa: E731
    f, m = shrink(fixed), shrink(moving)
    initial = sitk.CenteredTransformInitializer(f, m, sitk.AffineTransform(3),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.REGULAR)
    method.SetMetricSamplingPercentage(0.25, 1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 200, relaxationFactor=0.6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SetInitialTransform(initial, inPlace=False)
    return method.Execute(f, m)


def array(image):
    """(x, y, z) numpy view of a SimpleITK image (SimpleITK's own order is z, y, x)."""
    return np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))


def image_like(data, reference, origin_index=(0, 0, 0)):
    """(x, y, z) array as an image on ``reference``'s grid, starting at ``origin_index`` of it."""
    out = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(data, (2, 1, 0))))
    out.SetSpacing(reference.GetSpacing())
    out.SetDirection(reference.GetDirection())
    out.SetOrigin(tuple(np.asarray(reference.GetOrigin()) + np.asarray(reference.GetDirection()).reshape(3, 3)
                        @ (np.asarray(origin_index, float) * reference.GetSpacing())))
    return out


def fill_holes(mask):
    return ndimage.binary_fill_holes(mask)


def mri_sources():
    """(name, subject, T1 path, brain-mask rule) of every whole-head T1 used here."""
    nilearn = lambda f: package_file("nilearn", "datasets", "data", f)  # noqa: E731
    return [
        ("colin27hr", "colin27", system_file(MRICRON + "/ch2better.nii.gz", "mricron-data"), "nonzero"),
        ("colin27", "colin27", system_file(MRICRON + "/ch2.nii.gz", "mricron-data"), "colin"),
        ("mni2009a", "mni2009a", nilearn("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"), "nonzero"),
        ("mni6asym", "mni6asym", package_file("nimare", "resources", "templates",
                                              "tpl-MNI152NLin6Asym_res-01_T1w.nii.gz"), "mni6asym"),
        ("pydefacemean", "pydefacemean", package_file("pydeface", "data", "mean_reg2mean.nii.gz"), "colin"),
        ("itkt1", "itkt1", system_file(ITK_DATA + "/KmeansTest_T1UCharRaw.nii.gz", "insighttoolkit5-examples"),
         "itk"),
    ]


def brain_mask(rule, grid, atlas_transform):
    """The brain: the non-zero region of an image that ships brain-extracted (colin27hr, mni2009a), the
    source's own mask where it ships one, else Colin27's (ch2bet) propagated; closed and hole-filled."""
    def own(path):
        return array(sitk.Resample(read(path), grid, sitk.Transform(), sitk.sitkLinear, 0.0))
    if rule == "nonzero":
        t1 = array(grid)
        mask = t1 > 0.01 * np.percentile(t1, 99)
    elif rule == "mni6asym":
        mask = own(package_file("nimare", "resources", "templates",
                                "tpl-MNI152NLin6Asym_res-01_desc-brain_mask.nii.gz")) > 0.5
    elif rule == "itk":
        mask = own(system_file(ITK_DATA + "/KmeansTest_T1RawSkullStrip.nii.gz", "insighttoolkit5-examples")) > 0.5
    else:
        bet = read(system_file(MRICRON + "/ch2bet.nii.gz", "mricron-data"))
        mask = array(sitk.Resample(bet, grid, atlas_transform, sitk.sitkLinear, 0.0)) > 0.5
    mask = ndimage.binary_closing(ndimage.binary_opening(mask, iterations=1), iterations=2)
    return fill_holes(largest_component(mask))


def load_head(source):
    """One source on a 1-mm canonical grid: dict(name, subject, grid image, t1, aal, brain)."""
    name, subject, path, rule = source
    grid = canonical(read(path), 1.0)
    colin = read(system_file(MRICRON + "/ch2.nii.gz", "mricron-data"))
    transform = sitk.Transform() if name == "colin27" else affine_registration(grid, colin)
    aal = read(system_file(MRICRON + "/aal.nii.gz", "mricron-data"), sitk.sitkUInt8)
    atlas = array(sitk.Resample(aal, grid, transform, sitk.sitkNearestNeighbor, 0))
    t1 = array(grid).astype(np.float32)
    return dict(name=name, subject=subject, grid=grid, t1=t1, aal=atlas,
                brain=brain_mask(rule, grid, transform))


def crop(data, start, size):
    """``data[start:start+size]`` with zero padding where the box leaves the volume."""
    out = np.zeros(tuple(int(s) for s in size), data.dtype)
    lo = np.maximum(start, 0)
    hi = np.minimum(np.asarray(start) + size, data.shape)
    if np.any(hi <= lo):
        return out
    dst = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start))
    out[dst] = data[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))]
    return out


def case_rng(case):
    return np.random.default_rng(zlib.crc32(case.encode()))


def pitched(image, degrees):
    """``image`` turned by ``degrees`` about the left-right axis (nodding), as a change of its orientation."""
    a = np.deg2rad(degrees)
    rotation = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    out = sitk.Image(image)
    out.SetDirection(tuple((rotation @ np.asarray(image.GetDirection()).reshape(3, 3)).ravel()))
    out.SetOrigin(tuple(rotation @ np.asarray(image.GetOrigin())))
    return out


def load_head_ct():
    """InVesalius's example project (ProMED CT 0051): int16 HU volume, spacing from its main.plist."""
    import plistlib
    import tarfile
    with tarfile.open(system_file(INVESALIUS, "invesalius-examples")) as archive:
        members = {os.path.basename(m.name): m for m in archive.getmembers() if m.isfile()}
        info = plistlib.loads(archive.extractfile(members["main.plist"]).read())
        matrix = info["matrix"]
        raw = archive.extractfile(members[matrix["filename"]]).read()
    data = np.frombuffer(raw, dtype=matrix["dtype"]).reshape(matrix["shape"])   # (z, y, x)
    if info.get("modality") != "CT":
        raise SourceMissing("%s: modality %r, not CT" % (INVESALIUS, info.get("modality")))
    return np.ascontiguousarray(np.transpose(data, (2, 1, 0))), tuple(float(s) for s in info["spacing"])


def largest_component(mask):
    parts, n = ndimage.label(mask)
    return parts == (1 + np.argmax(ndimage.sum(mask, parts, range(1, n + 1)))) if n > 1 else mask


def slicewise_fill(mask):
    return np.stack([fill_holes(mask[:, :, z]) for z in range(mask.shape[2])], 2)
