"""Benchmark codes checked against reality: FLORES+ configuration names, and the installed lm-eval's task names."""

from __future__ import annotations

import pytest

from famlib.config import load_params
from famlib.languages import FLORES_PLUS_CONFIGS, LANGUAGES, language


def test_flores_plus_names_filipino_fil_latn_and_has_no_frisian():
    fil = language("fil")
    assert fil.flores == "fil_Latn" and fil.flores200 == "tgl_Latn"  # FLORES+ 2.0 relabelled it; Belebele did not
    assert language("fy").flores is None and "fry_Latn" not in FLORES_PLUS_CONFIGS
    assert "tgl_Latn" not in FLORES_PLUS_CONFIGS and len(set(FLORES_PLUS_CONFIGS)) == len(FLORES_PLUS_CONFIGS)
    # the list is exactly the configurations of the table's languages
    assert {lang.flores for lang in LANGUAGES.values() if lang.flores} == set(FLORES_PLUS_CONFIGS)


def test_paper_translation_tasks_use_flores_plus_names_and_frisian_is_a_gap():
    from famlib.errors import FamlibError
    from famlib.evaluate import paper

    p = load_params("paper")
    tasks, gaps = paper.paper_tasks(p)
    flores = {t.harness_task for t in tasks if t.task_name == "flores200"}
    assert {"famlib_flores200_eng_Latn-fil_Latn", "famlib_flores200_fil_Latn-eng_Latn"} <= flores
    assert not any("tgl_Latn" in t or "fry_Latn" in t or "None" in t for t in flores)
    assert "translation/fy" in gaps and "FLORES" in gaps["translation/fy"]
    assert not any(t.language == "fy" and t.axis == "translation" for t in tasks)
    assert len(flores) == 2 * (len(p.languages) - 3)  # every language but en (the probe), de (left out) and fy
    with pytest.raises(FamlibError, match="FLORES\\+ has no Western Frisian"):
        paper.flores_task("en", "fy")
    assert paper.belebele_task("fil") == "belebele_tgl_Latn"
    assert paper.global_piqa_task("fil") == "global_piqa_nonparallel_cloze_tgl_latn"


@pytest.mark.slow
@pytest.mark.xdist_group("lm_eval_index")
def test_every_belebele_and_global_piqa_task_of_the_paper_scale_is_in_the_installed_lm_eval(harness_tasks):
    import lm_eval

    from famlib.evaluate import paper

    registry = set(harness_tasks.all_tasks)  # the installed package's own task YAMLs (and famlib's FLORES); no network
    tasks, gaps = paper.paper_tasks(load_params("paper"))
    wanted = [t.harness_task for t in tasks if t.task_name in ("belebele", "global_piqa")]
    missing = sorted(name for name in wanted if name not in registry)
    version = getattr(lm_eval, "__version__", "?")
    assert not missing, f"{len(missing)} of {len(wanted)} tasks are not in the installed lm-eval {version}: {missing}"
    assert len(wanted) > 60
    # and the gaps put down to the harness are real: none of those task names exists
    claimed = [paper.belebele_task(lang) if axis == "comprehension" else paper.global_piqa_task(lang)
               for (axis, lang) in paper.HARNESS_GAPS]
    present = sorted(name for name in claimed if name in registry)
    assert not present, f"lm-eval {version} has tasks famlib calls gaps: {present}"
    # what the gaps' reasons say: Cebuano only in the parallel split; or, su, mg left out by the paper, not the harness
    assert "global_piqa_parallel_cloze_ceb_latn" in registry
    assert {paper.global_piqa_task(lang) for lang in ("or", "su", "mg")} <= registry
    assert all(gaps[f"reasoning/{lang}"].endswith("(paper)") for lang in ("or", "su", "mg"))
