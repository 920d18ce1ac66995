"""``--llm local:NAME``: the real ``transformers serve`` on 127.0.0.1, no mock.

The served model is a tiny Llama saved with ``save_pretrained`` and a word-level tokenizer with a
chat template, built offline. Its attention and MLP outputs are zero and its unembedding maps
each token to a chosen next token, so greedy decoding always answers the same reply (built from
real weights by the real server): an explanation line that also holds a 5-value detection list.
The end-to-end test therefore checks that explanations and detection scores come back through real
HTTP and the project's parsers, not just that some text arrived. One server start takes
≈ 6–15 s on a busy 2-core machine (importing transformers and uvicorn), so the module starts
it once, through the CLI.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from probsae import extras
from probsae.cli.main import main
from probsae.errors import ConfigError, FileIOError
from probsae.interp.local_llm import LocalLLMConfig, LocalLLMError, LocalLLMServer, parse_llm_spec

pytestmark = pytest.mark.skipif(not extras.available("serve"), reason="needs the 'serve' extra")

REPLY = ["EXPLANATION:", "alpha", "beta", "[0,", "1,", "false,", "true,", "0]"]
"""The reply's words; the word-level tokenizer decodes them joined by spaces."""
ANSWER = "alpha beta [0, 1, false, true, 0]"
PREDICTIONS = [0, 1, 0, 1, 0]


def build_chat_model(out: Path) -> Path:
    """A 16-token Llama whose greedy reply to any chat is ``EXPLANATION: <ANSWER>``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<|im_start|>", "<|im_end|>", "assistant", "user", "system"] + REPLY
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<|im_start|>",
                                   eos_token="<|im_end|>")
    fast.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|> "
                          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant{% endif %}")
    n = 16
    eos = vocab["<|im_end|>"]
    cfg = LlamaConfig(vocab_size=n, hidden_size=n, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=8192, tie_word_embeddings=False,
                      bos_token_id=vocab["<|im_start|>"], eos_token_id=eos, pad_token_id=vocab["<unk>"])
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    chain = ["assistant"] + REPLY + ["<|im_end|>"]
    with torch.no_grad():  # residual stream = one-hot token; lm_head = the next-token table
        model.model.embed_tokens.weight.copy_(torch.eye(n))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        table = torch.zeros(n, n)
        table[eos, :] = 1.0
        for a, b in zip(chain, chain[1:]):
            table[:, vocab[a]] = 0.0
            table[vocab[b], vocab[a]] = 10.0
        model.lm_head.weight.copy_(table)
    model.generation_config = GenerationConfig(bos_token_id=cfg.bos_token_id, eos_token_id=eos,
                                               pad_token_id=cfg.pad_token_id)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny_chat_llama"))


def _gone(pid: int, group: bool = False) -> bool:
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def cli_result(chat_model, trained_run, tmp_path_factory):
    """``probsae autointerp RUN --llm local:<tiny model>`` run once: (exit code, out dir, server log)."""
    tmp = tmp_path_factory.mktemp("local_llm_cli")
    out, log = tmp / "table", tmp / "serve.log"
    code = main(["autointerp", str(trained_run), "--llm", f"local:{chat_model}", "--llm-log", str(log),
                 "--n-latents", "2", "--n-buckets", "1", "--n-explain", "3", "--n-test", "5", "--n-nonact", "5",
                 "--n-windows", "160", "--cache-dir", str(tmp / "cache"), "--llm-cache", str(tmp / "llm_cache"),
                 "--llm-max-tokens", "100", "--out", str(out)])
    return code, out, log, tmp / "llm_cache"


def test_autointerp_explains_and_scores_through_a_real_local_server(cli_result):
    code, out, _, _ = cli_result
    assert code == 0
    results = Path(json.loads((out / "table2.json").read_text())["runs"][0]["results_dir"])
    expl = [json.loads(l) for l in (results / "explanations.jsonl").read_text().splitlines()]
    scores = [json.loads(l) for l in (results / "scores.jsonl").read_text().splitlines()]
    assert len(expl) == len(scores) == 2
    assert [e["explanation"] for e in expl] == [ANSWER, ANSWER] and all(e["source"] == "llm" for e in expl)
    for s in scores:  # 10 windows in 2 prompts of 5, every answer parsed into the same 5 predictions
        assert s["n_prompts"] == 2 and s["n_failed_prompts"] == 0 and s["n_answered"] == 10
        assert [d["prediction"] for d in s["details"]] == PREDICTIONS * 2
        hit = {True: [], False: []}
        for d in s["details"]:
            hit[d["activating"]].append(d["prediction"] == int(d["activating"]))
        assert s["score"] == pytest.approx((sum(hit[True]) / 5 + sum(hit[False]) / 5) / 2)  # balanced accuracy
    summary = json.loads((results / "summary.json").read_text())
    assert summary["llm"]["ok"] == 2 + 4 and summary["llm"].get("failures", 0) == 0


def test_llm_max_tokens_caps_what_each_request_asks_for(cli_result):
    *_, llm_cache = cli_result
    asked = sorted(json.loads(p.read_text())["params"]["max_tokens"] for p in llm_cache.glob("*/*.json"))
    assert asked == [64] * 4 + [100] * 2  # detection asks 64 (under the cap), explanations 400 (capped)


def test_the_local_server_is_gone_after_the_run(cli_result):
    _, _, log, _ = cli_result
    text = log.read_text()
    assert "/health" in text  # the server answered its health check before the run
    pid = int(text.split("Started server process [")[1].split("]")[0])
    port = int(text.split("Uvicorn running on http://127.0.0.1:")[1].split(" ")[0])
    assert _gone(pid)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_server_that_exits_is_a_clear_error_naming_its_log(chat_model, tmp_path):
    """A real start-up failure that costs no model load: ``transformers serve`` refuses an option."""
    log = tmp_path / "serve.log"
    srv = LocalLLMServer(LocalLLMConfig(str(chat_model), log_path=str(log), extra_args=["--no-such-option"],
                                        progress=False))
    with pytest.raises(LocalLLMError, match="exited with status 2") as e:
        srv.start()
    last = log.read_text().strip().splitlines()[-1].strip()
    assert str(log) in str(e.value) and last and last in str(e.value)  # it quotes the log's last lines


def test_a_server_not_ready_in_time_is_stopped(chat_model, tmp_path):
    log = tmp_path / "serve.log"
    srv = LocalLLMServer(LocalLLMConfig(str(chat_model), log_path=str(log), startup_timeout=0.2, progress=False))
    with pytest.raises(LocalLLMError, match="not ready after 0.2 s") as e:
        srv.start()
    assert str(log) in str(e.value) and srv.proc is None and _gone(srv.pid, group=True)


def test_an_unwritable_log_is_a_clear_error_before_any_server_starts(chat_model, tmp_path):
    (tmp_path / "a_file").write_text("x")
    srv = LocalLLMServer(LocalLLMConfig(str(chat_model), log_path=str(tmp_path / "a_file" / "serve.log"),
                                        progress=False))
    with pytest.raises(FileIOError, match="a_file"):
        srv.start()
    assert srv.proc is None and srv.pid is None


def test_llm_spec_and_model_folder_are_checked(tmp_path, capsys, trained_run):
    assert parse_llm_spec("local:smollm2") == "smollm2"
    for bad in ("smollm2", "local:", "http://localhost:8000/v1"):
        with pytest.raises(ConfigError, match="local:NAME"):
            parse_llm_spec(bad)
    with pytest.raises(ConfigError, match="not 'smollm2'"):
        LocalLLMServer(LocalLLMConfig(str(tmp_path), progress=False)).start()
    code = main(["autointerp", str(trained_run), "--llm", "local:smollm2", "--llm-base-url", "http://x:1/v1"])
    assert code == 2 and "leave out --llm-base-url" in capsys.readouterr().err
    code = main(["autointerp", str(trained_run), "--llm", "local:smollm2", "--n-buckets", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "n_buckets" in err and "starting" not in err  # checked before any server starts
