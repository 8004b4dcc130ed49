"""nnU-Net v1's data pipeline for pretraining: its DataLoader3D and SpatialTransform, then the Genesis distortions.
"""


# --------------------------------------------------------------------------------------------
# Data pipeline
# --------------------------------------------------------------------------------------------
def genesis_transforms(patch_size, params, genesis_transform, spatial=True):
    """batchgenerators Compose: [nnU-Net's spatial augmentation], Genesis, to tensors.

    Follows ``get_moreDA_augmentation`` in nnU-Net 1.7.1's
    ``nnunet/training/data_augmentation/data_augmentation_moreDA.py``: the same Convert3DTo2D /
    SpatialTransform(data_aug_params) / Convert2DTo3D wiring. Departs from it by dropping the noise,
    blur, brightness, contrast, low-resolution, gamma and mirror transforms (the Genesis distortions
    take their place) and by applying no spatial augmentation to validation patches."""
    from batchgenerators.transforms.abstract_transforms import Compose
    from batchgenerators.transforms.spatial_transforms import SpatialTransform
    from batchgenerators.transforms.utility_transforms import NumpyToTensor
    from nnunet.training.data_augmentation.custom_transforms import Convert2DTo3DTransform, Convert3DTo2DTransform

    transforms = []
    if spatial:
        dummy_2d = bool(params.get("dummy_2D"))
        if dummy_2d:  # anisotropic patches: nnU-Net augments them slice-wise in 2D
            transforms.append(Convert3DTo2DTransform())
        transforms.append(SpatialTransform(
            patch_size[1:] if dummy_2d else patch_size, patch_center_dist_from_border=None,
            do_elastic_deform=params.get("do_elastic"), alpha=params.get("elastic_deform_alpha"),
            sigma=params.get("elastic_deform_sigma"), do_rotation=params.get("do_rotation"),
            angle_x=params.get("rotation_x"), angle_y=params.get("rotation_y"), angle_z=params.get("rotation_z"),
            p_rot_per_axis=params.get("rotation_p_per_axis"), do_scale=params.get("do_scaling"),
            scale=params.get("scale_range"), border_mode_data=params.get("border_mode_data"), border_cval_data=0,
            order_data=3, border_mode_seg="constant", border_cval_seg=-1, order_seg=1,
            random_crop=params.get("random_crop"), p_el_per_sample=params.get("p_eldef"),
            p_scale_per_sample=params.get("p_scale"), p_rot_per_sample=params.get("p_rot"),
            independent_scale_for_each_axis=params.get("independent_scale_factor_for_each_axis")))
        if dummy_2d:
            transforms.append(Convert2DTo3DTransform())
    transforms.append(genesis_transform)
    transforms.append(NumpyToTensor(["data", "target"], "float"))
    return Compose(transforms)


def genesis_augmentation(dl_tr, dl_val, patch_size, params, train_transform, validation_transform,
                         pin_memory=False):
    """(train, validation) MultiThreadedAugmenters for restoration, with nnU-Net's worker counts.

    ``train_transform``: a GenesisTransform with seed None (fresh entropy in every worker process) or, in a
    seeded training, the training's seed (the trainer then seeds the workers: ``nnunet_genesis/training_seed.py``);
    ``validation_transform``: one with the fixed validation seed, so that the validation loss compares between
    epochs (both from ``nnunet_genesis.pretraining.trainer_hooks.GenesisPretrainSettings``).
    """
    from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
    num_threads = params.get("num_threads")
    tr = MultiThreadedAugmenter(dl_tr, genesis_transforms(patch_size, params, train_transform),
                                num_threads, params.get("num_cached_per_thread"), pin_memory=pin_memory)
    val = MultiThreadedAugmenter(dl_val, genesis_transforms(patch_size, params, validation_transform, spatial=False),
                                 max(num_threads // 2, 1), params.get("num_cached_per_thread"), pin_memory=pin_memory)
    return tr, val
