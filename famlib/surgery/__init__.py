"""Post-hoc weight surgery on Hugging Face model directories: revert, soup, interpolate.

Each operation is a registered method (:mod:`famlib.surgery.registry`) with pure per-tensor arithmetic
(:mod:`~famlib.surgery.revert`, :mod:`~famlib.surgery.soup`, :mod:`~famlib.surgery.interpolate`);
:func:`apply` is the edge that reads the inputs tensor by tensor, checks them, streams the output and
writes ``famlib_surgery.json`` beside the weights. Which groups an operation changes, and what happens
to embeddings, final norm and a tied head, is asked from :mod:`famlib.layers`. The command line is
:mod:`famlib.surgery.cli`. Importing this package does not import torch (the command line stays fast).
"""

from famlib.surgery.driver import SurgeryResult, apply, apply_state_dicts, interpolate, revert, soup
from famlib.surgery.distance import (distance_csv, group_distances, layer_distance_figure, layer_distances,
                                     posthoc_distances, verify_reverted, write_distances)
from famlib.surgery.errors import SurgeryError
from famlib.surgery.interpolate import interpolate_tensor
from famlib.surgery.io import RECORD_NAME, ModelDir
from famlib.naming import all_model_ids, model_id, model_path, models_dir, parse_model_id
from famlib.surgery.posthoc import (MissingModels, PosthocResult, build_posthoc_models, missing_inputs,
                                    posthoc_jobs, posthoc_table)
from famlib.surgery.registry import METHODS, get_method
from famlib.surgery.revert import revert_state_dict
from famlib.surgery.soup import soup_tensors

__all__ = [
    "METHODS", "RECORD_NAME", "MissingModels", "ModelDir", "PosthocResult", "SurgeryError", "SurgeryResult",
    "all_model_ids", "apply", "apply_state_dicts", "build_posthoc_models", "distance_csv", "get_method", "group_distances",
    "interpolate", "interpolate_tensor", "layer_distance_figure", "layer_distances", "missing_inputs",
    "model_id", "model_path", "models_dir", "parse_model_id", "posthoc_distances", "posthoc_jobs",
    "posthoc_table", "revert", "revert_state_dict", "soup", "soup_tensors", "verify_reverted", "write_distances",
]
