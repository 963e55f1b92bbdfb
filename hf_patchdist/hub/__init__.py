"""The Hub: download rewriters (``download``), push rewriters and patched data sets (``upload``) with their cards (``cards``).

Depends on :mod:`hf_patchdist.rewriter.config` only, never on the :class:`~hf_patchdist.rewriter.Rewriter` class.
"""

from .cards import build_patched_dataset_card, build_rewriter_card, rewriter_card_data, rewriter_record
from .download import check_base_model, download_rewriter
from .ids import hub_base_model, is_hub_repo_id
from .upload import push_patched_dataset, push_rewriter


__all__ = [
    "build_patched_dataset_card",
    "build_rewriter_card",
    "check_base_model",
    "download_rewriter",
    "hub_base_model",
    "is_hub_repo_id",
    "push_patched_dataset",
    "push_rewriter",
    "rewriter_card_data",
    "rewriter_record",
]
