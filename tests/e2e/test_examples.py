"""The README's API example (``examples/swarm_torchrun.py``) filled in the obvious wrong way:
every rank shuffles with the same seed, so the particles stay identical and ``Swarm`` says so."""

from __future__ import annotations

from pathlib import Path

from support.helpers import ROOT, torchrun_script

RIGHT = "torch.Generator().manual_seed(rank)"  # the example's per-rank shuffle
WRONG = "torch.Generator().manual_seed(0)"  # the same order on every rank


def test_the_api_example_with_one_data_order_on_every_rank_warns(tmp_path: Path) -> None:
    source = (ROOT / "examples" / "swarm_torchrun.py").read_text()
    assert source.count(RIGHT) == 1, "the example no longer seeds its shuffle with the rank"
    script = tmp_path / "same_order.py"
    script.write_text(source.replace(RIGHT, WRONG))
    result = torchrun_script(script, 2, "--epochs", "1")
    assert result.returncode == 0, result.stderr
    warned = result.stderr.count("all 2 particles are identical at the first round")
    assert warned == 1, result.stderr  # once, from particle 0
    assert "give each rank its own data order" in result.stderr
