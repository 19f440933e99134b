"""The assignment levels (tools/levels.py): hw5.md's generated tables are current, each level's hw5.md is
consistent, and every TODO of every level has graded tests and mutants. The handouts themselves (skeleton
0, solution full) are checked in test_handout.py."""

from __future__ import annotations

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import levels  # noqa: E402
import make_handout  # noqa: E402
import mutants  # noqa: E402

HW5 = (ROOT / "hw5.md").read_text(encoding="utf-8")


def test_hw5_generated_blocks_are_current():
    assert levels.hw5_for_level(HW5, "standard", keep_markers=True) == HW5, \
        "hw5.md's generated blocks are stale: run `python tools/levels.py --update`"


def test_levels_name_known_todos_in_working_order():
    regions = make_handout.all_todo_ids()
    assert set(levels.BY_ID) == set(regions), "tools/levels.py lists exactly the TODOs that have solution regions"
    assert set(levels.LEVELS["intro"].todos) < set(levels.LEVELS["standard"].todos) < set(levels.LEVELS["advanced"].todos)
    assert set(levels.LEVELS["advanced"].todos) == set(regions), "the advanced level strips every TODO"
    assert 3 <= len(levels.LEVELS["intro"].todos) <= 4


def test_every_todo_has_a_mutant_and_hidden_tests_where_its_level_needs_them():
    with_mutants = {m.todo for m in mutants.MUTANTS}
    missing = [t for t in levels.BY_ID if t not in with_mutants]
    assert not missing, f"TODOs without a mutant in tools/mutants.py: {missing}"
    for name in levels.LEVELS:
        hidden = {m.todo for m in levels.graded_points() if m.hidden and m.todo in levels.LEVELS[name].todos}
        assert hidden, f"the {name} level has no hidden tests"


def test_questions_are_renumbered_and_references_follow():
    text = ("**Q1 (2 points).** a\n<!-- LEVELS standard -->\n**Q2 (3 points).** b\n<!-- END LEVELS -->\n"
            "**Q3 (4 points).** c, as in Q1 and Q3(b)\n")
    intro = levels.hw5_for_level(text, "intro")
    assert intro == "**Q1 (2 points).** a\n**Q2 (4 points).** c, as in Q1 and Q2(b)\n"
    assert levels.hw5_for_level(text, "standard") == "**Q1 (2 points).** a\n**Q2 (3 points).** b\n" \
                                                     "**Q3 (4 points).** c, as in Q1 and Q3(b)\n"
    with pytest.raises(levels.LevelError, match="refers to Q2, which the level leaves out"):
        levels.hw5_for_level(text.replace("as in Q1", "as in Q2"), "intro")
    with pytest.raises(levels.LevelError, match="unknown levels"):
        levels.hw5_for_level("<!-- LEVELS expert -->\nx\n<!-- END LEVELS -->\n", "intro")


def test_intro_keeps_the_questions_its_students_can_answer():
    intro = levels.hw5_for_level(HW5, "intro")
    assert "Backpropagation through time" not in intro and "GPT-2 small" not in intro.split("## 4.")[1].split("## 5.")[0]
    assert "**Q15 (5 points).** Explain temperature, top-k and top-p" in intro, "the sampling question, renumbered"
    assert "TODO `logit-bias-recovery`" not in intro and "bpe" not in intro.split("## 2.")[1].split("## 3.")[0]


def test_make_handout_rejects_an_unknown_level(tmp_path):
    assert make_handout.main([str(tmp_path / "x"), "--level", "intro", "--todos", "no-such"]) == 2
    with pytest.raises(SystemExit):
        make_handout.main([str(tmp_path / "x"), "--level", "expert"])
