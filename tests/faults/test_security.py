"""Issue 14, security: a crafted checkpoint never runs code (the redirect/credential findings are
tested against a real local HTTP server in tests/interp/test_llm.py)."""

import torch


class Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # unpickling runs this
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def plant(run_dir, marker):
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 4, "architecture": "topk", "sae": Evil(marker)}, run_dir / "checkpoint.pt")


def test_crafted_checkpoint_in_a_run_directory_does_not_run_on_resume(run_copy, tmp_path, train_args, fails_cleanly):
    marker = tmp_path / "pwned"
    (run_copy / "checkpoint.safetensors").unlink()
    plant(run_copy, marker)
    fails_cleanly(train_args(run_copy), "checkpoint.pt", "old pickle format", "arbitrary code")
    assert not marker.exists()


def test_crafted_checkpoint_alone_in_a_directory_does_not_run(tmp_path, train_args, fails_cleanly):
    marker = tmp_path / "pwned"
    lone = tmp_path / "lone"
    plant(lone, marker)
    fails_cleanly(train_args(lone), "is not empty (checkpoint.pt)", "--force")  # not a probsae run
    fails_cleanly(train_args(lone, "--force"), "old pickle format")
    assert not marker.exists()
