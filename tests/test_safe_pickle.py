"""The restricted unpickler: nnU-Net's plain-data pickles read back; anything that would run code is refused."""
import collections
import os
import pickle

import numpy as np
import pytest

from nnunet_genesis.io import safe_pickle


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > %s" % _RunsCode.marker,))


def test_plain_nnunet_data_reads_back(tmp_path):
    plans = collections.OrderedDict(
        plans_per_stage={0: {"patch_size": np.array([40, 56, 40]), "batch_size": 2, "pool_op_kernel_sizes": [[2, 2, 2]]}},
        normalization_schemes=collections.OrderedDict({0: "nonCT"}), use_mask_for_norm={0: False},
        dataset_properties={"intensityproperties": None, "all_classes": [1, 2]}, spacing=(1.0, 1.0, 1.0),
        mean=np.float32(1.5), mask=np.zeros((2, 3), dtype=bool), name=b"raw", keys={"a", "b"},
        frozen=frozenset({1}), defaults=collections.defaultdict(list))
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / ("plans%d.pkl" % protocol)
        path.write_bytes(pickle.dumps(plans, protocol=protocol))
        back = safe_pickle.load(path)
        assert back["plans_per_stage"][0]["patch_size"].tolist() == [40, 56, 40]
        assert back["mean"] == np.float32(1.5) and back["mean"].dtype == np.float32
        assert back["mask"].dtype == bool and back["keys"] == {"a", "b"} and back["name"] == b"raw"


def test_a_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "pwned"
    _RunsCode.marker = str(marker)
    path = tmp_path / "model_final_checkpoint.model.pkl"
    path.write_bytes(pickle.dumps({"name": "x", "init": _RunsCode()}))
    with pytest.raises(safe_pickle.UnsafePickleError) as error:
        safe_pickle.load(path)
    assert str(error.value).startswith(str(path) + ": ") and ".system" in str(error.value)
    assert not marker.exists()


def test_a_truncated_pickle_names_the_file_and_says_so(tmp_path):
    path = tmp_path / "plans.pkl"
    data = pickle.dumps({"plans_per_stage": {0: {"patch_size": np.arange(3)}}, "x": list(range(100))})
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(safe_pickle.UnsafePickleError) as error:
        safe_pickle.load(path)
    assert str(error.value).startswith(str(path) + ": ") and "truncated" in str(error.value)
