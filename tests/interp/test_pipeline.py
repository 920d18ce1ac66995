import pytest

from probsae.errors import ConfigError
from probsae.interp.llm_client import LLMConfig
from probsae.interp.pipeline import AutoInterpConfig


def _cfg(**kw) -> AutoInterpConfig:
    return AutoInterpConfig(llm=LLMConfig(base_url="http://127.0.0.1:1/v1", model="m"), **kw)


def test_prompt_formats_enter_the_settings_key_only_when_not_the_default():
    default = _cfg()
    assert "judge_format" not in default.settings() and "explanation_format" not in default.settings()
    assert _cfg(judge_format="list", explanation_format="strict").key() == default.key()
    assert _cfg(judge_format="yes-no").settings()["judge_format"] == "yes-no"
    assert len({default.key(), _cfg(judge_format="yes-no").key(), _cfg(explanation_format="lenient").key()}) == 3
    # a format the method does not use changes nothing
    offline = dict(scorer="embedding", explainer="top-tokens")
    assert _cfg(judge_format="yes-no", explanation_format="lenient", **offline).key() == _cfg(**offline).key()


def test_default_settings_key_is_the_one_results_were_written_under():
    # computed by the code before --judge-format/--explanation-format existed: old results stay found
    assert AutoInterpConfig().key() == "detection-llm-6c47959b29"


@pytest.mark.parametrize("kw", [{"judge_format": "json"}, {"explanation_format": "loose"}])
def test_unknown_formats_are_config_errors(kw):
    with pytest.raises(ConfigError):
        _cfg(**kw).validate()


def test_the_command_line_passes_the_formats_on(trained_run, autointerp_configs):
    from probsae.cli.main import main

    base = ["autointerp", str(trained_run), "--llm-base-url", "http://127.0.0.1:1/v1", "--llm-model", "m", "--no-progress"]
    assert main(base) == 2
    assert main([*base, "--judge-format", "yes-no", "--explanation-format", "lenient"]) == 2
    assert [(c.judge_format, c.explanation_format) for c in autointerp_configs] == [("list", "strict"), ("yes-no", "lenient")]
