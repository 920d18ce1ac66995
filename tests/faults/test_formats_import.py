"""Issue 24 (7–9): imported configs of hostile values, import into a folder of other files, and
saving NaN weights. Each is a one-line error (exit 2) that writes nothing."""

import json

import pytest
import torch

import probsae
from probsae.cli.main import main
from probsae.errors import SAEFileError


def _export(reference, tmp_path, fmt="saelens", normalize=None):
    exp = tmp_path / "exp"
    src = reference
    normalize = normalize or ("scalar" if fmt == "sparsify" else None)  # sparsify has no 'unit' form
    if normalize:  # the reference run normalises 'unit'; a 'scalar' SAE records its scale in the export
        sae = probsae.load_sae(reference)
        sae2 = probsae.build_sae(sae.architecture, **{**sae.config_dict()["config"], "normalize": normalize})
        state = {**sae.state_dict(), "normalizer.scale": torch.tensor(0.5), "normalizer.fitted": torch.tensor(True)}
        sae2.load_state_dict(state)
        src = tmp_path / "src"
        sae2.save(src)
    assert main(["export", str(src), "--format", fmt, "--out", str(exp), "--hookpoint", "hp"]
                [: 6 if fmt == "saelens" else 8]) == 0
    return exp if fmt == "saelens" else exp / "hp"


def _edit(cfg_path, edit):
    cfg = json.loads(cfg_path.read_text())
    edit(cfg)
    cfg_path.write_text(json.dumps(cfg))


def _block(cfg, fmt):
    return cfg["metadata"]["probsae"] if fmt == "saelens" else cfg["probsae"]


@pytest.mark.parametrize("fmt", ["saelens", "sparsify"])
@pytest.mark.parametrize("value, needle", [
    (0, "scale must be a positive number"), ("nan", "scale must be a positive number"),
    (float("nan"), "scale must be a positive number"), (float("inf"), "scale must be a positive number"),
    (1e308, "scale must be a positive number"), (1e-320, "scale must be a positive number"),
    (-2.0, "scale must be a positive number"), (True, "scale must be a positive number"),
])
def test_an_imported_scale_out_of_range(reference, tmp_path, fails_cleanly, fmt, value, needle):
    exp = _export(reference, tmp_path, fmt, normalize="scalar")

    def edit(cfg):
        _block(cfg, fmt)["scale"] = value

    _edit(exp / "cfg.json", edit)
    fails_cleanly(["import", str(exp), "--format", fmt, "--out", str(tmp_path / "imp")], needle, "probsae.scale")
    assert not (tmp_path / "imp").exists()


@pytest.mark.parametrize("field, value, needle", [
    ("seed", "x", "seed must be a 64-bit integer"), ("seed", 2.5, "seed must be a 64-bit integer"),
    ("seed", 1 << 70, "seed must be a 64-bit integer"), ("aux_coeff", "nan", "aux_coeff must be a finite number"),
    ("aux_coeff", 1e308, "aux_coeff must be a finite number"), ("aux_coeff", 1e-320, "aux_coeff must be a finite"),
    ("aux_k", True, "aux_k must be a 64-bit integer"),
])
def test_an_imported_hyperparameter_of_the_wrong_type_or_range(reference, tmp_path, fails_cleanly, field, value, needle):
    exp = _export(reference, tmp_path)

    def edit(cfg):
        cfg["metadata"]["probsae"]["config"][field] = value

    _edit(exp / "cfg.json", edit)
    fails_cleanly(["import", str(exp), "--format", "saelens", "--out", str(tmp_path / "imp")], needle)
    assert not (tmp_path / "imp").exists()


@pytest.mark.parametrize("value", [1e400, "3", 0])
def test_a_sparsify_d_in_of_the_wrong_type(reference, tmp_path, fails_cleanly, value):
    exp = _export(reference, tmp_path, "sparsify")
    text = (exp / "cfg.json").read_text().replace('"d_in": 16', f'"d_in": {json.dumps(value) if value != 1e400 else "1e400"}')
    (exp / "cfg.json").write_text(text)
    fails_cleanly(["import", str(exp), "--format", "sparsify", "--out", str(tmp_path / "imp")],
                  "d_in must be a positive integer")
    assert not (tmp_path / "imp").exists()


@pytest.mark.parametrize("fmt", ["saelens", "sparsify"])
def test_deeply_nested_json_in_an_imported_cfg(reference, tmp_path, fails_cleanly, fmt):
    exp = _export(reference, tmp_path, fmt)
    (exp / "cfg.json").write_text("[" * 100_000 + "]" * 100_000)
    fails_cleanly(["import", str(exp), "--format", fmt, "--out", str(tmp_path / "imp")], "nested too deeply")
    assert not (tmp_path / "imp").exists()


def test_import_into_a_folder_holding_other_files_needs_force(reference, tmp_path, fails_cleanly):
    exp = _export(reference, tmp_path)
    out = tmp_path / "imp"
    out.mkdir()
    (out / "sae.safetensors").write_bytes(b"the user's own weights")
    fails_cleanly(["import", str(exp), "--format", "saelens", "--out", str(out)], "sae.safetensors", "--force")
    assert (out / "sae.safetensors").read_bytes() == b"the user's own weights"
    assert sorted(p.name for p in out.iterdir()) == ["sae.safetensors"]
    assert main(["import", str(exp), "--format", "saelens", "--out", str(out), "--force"]) == 0
    assert probsae.load_sae(out).d_in == 16


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_saving_non_finite_weights_is_refused_and_writes_nothing(tmp_path, bad):
    sae = probsae.build_sae("topk", d_in=8, d_sae=16, k=2)
    with torch.no_grad():
        sae.W_enc[1, 2] = bad
    with pytest.raises(SAEFileError, match="'W_enc'.*NaN/inf"):
        sae.save(tmp_path / "s")
    assert not (tmp_path / "s").exists()
    good = probsae.build_sae("topk", d_in=8, d_sae=16, k=2)
    good.save(tmp_path / "t")
    assert probsae.load_sae(tmp_path / "t").d_in == 8


def test_the_hook_name_export_writes_is_accepted_by_train(reference, tmp_path, train_args):
    """Issue 24 (22): `--hook blocks.1.hook_resid_pre` (the SAELens name of resid_pre.1) trains the
    same SAE as `--hook resid_pre.1`; its sparsify export is named by the GPT-2 module path."""
    argv = train_args(tmp_path / "run", cache=tmp_path / "cache")
    argv[argv.index("--hook") + 1] = "blocks.1.hook_resid_pre"
    assert main(argv) == 0
    ours, ref = probsae.load_sae(tmp_path / "run"), probsae.load_sae(reference)
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    exp = tmp_path / "exp"
    assert main(["export", str(tmp_path / "run"), "--format", "saelens", "--out", str(exp)]) == 0
    assert json.loads((exp / "cfg.json").read_text())["metadata"]["hook_name"] == "blocks.1.hook_resid_pre"
    assert main(["export", str(tmp_path / "run"), "--format", "sparsify", "--out", str(tmp_path / "sp"),
                 "--allow-lossy"]) == 0
    assert (tmp_path / "sp" / "h.0" / "cfg.json").is_file()  # resid_pre.1 = output of GPT-2's block h.0


@pytest.mark.parametrize("fmt, key", [("saelens", "apply_b_dec_to_input"), ("saelens", "rescale_acts_by_decoder_norm"),
                                      ("sparsify", "transcode"), ("sparsify", "signed")])
def test_an_imported_flag_that_is_not_true_or_false(reference, tmp_path, fails_cleanly, fmt, key):
    """A string "false" is truthy in Python: it must not be read as true."""
    exp = _export(reference, tmp_path, fmt)
    _edit(exp / "cfg.json", lambda cfg: cfg.__setitem__(key, "false"))
    fails_cleanly(["import", str(exp), "--format", fmt, "--out", str(tmp_path / "imp")], f"{key} must be true or false")
    assert not (tmp_path / "imp").exists()
