"""Where a run's data spec comes from (run.json, or a sweep member's sweep.json), and grouping by hook."""

import json
from types import SimpleNamespace

from probsae.bench.context import data_key, group_by_hook, run_data


def test_sweep_member_reads_the_sweep_data_spec(tmp_path):
    member = tmp_path / "sweep" / "runs" / "topk-k=8"
    member.mkdir(parents=True)
    data = {"model": "smollm2", "hook": "resid_pre.20", "corpus": "offline-en", "context_length": 256,
            "eval_tokens": 100000, "holdout_every": 20, "model_dtype": "bfloat16", "cache_dir": "/caches"}
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps({"config": {"data": data}}))
    spec, cache = run_data(member)
    assert (spec.model, spec.hook, spec.corpus, spec.eval_tokens) == ("smollm2", "resid_pre.20", "offline-en", 100000)
    assert cache == "/caches"
    assert data_key(spec) == data_key(run_data(member)[0])


def test_a_bare_sae_directory_or_an_unreadable_sweep_data_has_no_data_spec(tmp_path):
    assert run_data(tmp_path) == (None, None)
    member = tmp_path / "sweep" / "runs" / "m"
    member.mkdir(parents=True)
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps({"config": {"data": {"no_such_field": 1}}}))
    assert run_data(member) == (None, None)


def test_members_group_by_model_and_hook_in_order():
    def m(name, model, hook):
        return SimpleNamespace(name=name, metadata=SimpleNamespace(model_name=model, hook_name=hook))
    members = [m("a", "x", "h1"), m("b", "x", "h2"), m("c", "x", "h1"), m("d", "y", "h1")]
    groups = group_by_hook(members)
    assert [[x.name for x in g] for g in groups.values()] == [["a", "c"], ["b"], ["d"]]
