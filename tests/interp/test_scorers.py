from probsae.interp.explainer import Explanation, TextFormatter
from probsae.interp.scorers import DetectionScorer, build_yes_no_messages, parse_yes_no


TEXTS = ["the cat sat", "a cat ran", "cats and dogs", "the dog sat", "a bird flew", "the sun rose",
         "gibberish here now"]


def test_yes_no_reply_is_read_by_its_first_word():
    assert parse_yes_no("yes") == 1
    assert parse_yes_no("Yes.") == 1
    assert parse_yes_no("YES, because the cat") == 1
    assert parse_yes_no("  no") == 0
    assert parse_yes_no("No!") == 0
    for bad in ("garbage", "", None, "Yesterday it fired", "The answer is yes", "[1]"):
        assert parse_yes_no(bad) is None


def test_yes_no_prompt_holds_one_excerpt():
    msgs = build_yes_no_messages('the token "cat"', "the cat sat")
    assert msgs[0]["role"] == "system" and "Yes or No" in msgs[0]["content"]
    assert msgs[1]["content"] == ('Explanation: the token "cat"\n\nExcerpt: the cat sat\n\n'
                                  "Does the feature fire on this excerpt? Answer Yes or No.")


def _judge(msgs: list[dict]) -> str:
    """Yes when 'cat' is in the excerpt, garbage for 'gibberish', else No."""
    excerpt = msgs[-1]["content"].split("Excerpt: ")[1].split("\n")[0]
    return "I think so" if "gibberish" in excerpt else ("Yes." if "cat" in excerpt else "no")


def test_yes_no_scores_are_the_balanced_accuracy_of_the_answered_excerpts(scripted):
    client = scripted.ScriptedClient(_judge)
    scorer = DetectionScorer(client, examples_per_prompt=5, judge_format="yes-no")
    b = scripted.bucket(test=[0, 1, 3], nonactivating=[2, 4, 5, 6])   # "cats and dogs" holds "cat": a false positive
    [s] = scorer.score_many(TextFormatter(scripted.WordsCache(TEXTS)), [(Explanation(9, 0, 'the token "cat"', "llm"), b)])
    assert len(client.requests) == 7 and all(p["max_tokens"] <= 8 for _, p in client.requests)
    # answered: activating 0,1 yes, 3 no (TP 2, FN 1); non-activating 2 yes, 4,5 no (FP 1, TN 2); 6 failed
    assert s.n_prompts == 7 and s.n_failed_prompts == 1 and s.n_answered == 6
    assert abs(s.score - (2 / 3 + 2 / 3) / 2) < 1e-12
    assert s.precision == 2 / 3 and s.recall == 2 / 3


def test_list_format_is_unchanged_by_default(scripted):
    client = scripted.ScriptedClient(lambda msgs: "[1, 1, 1, 1, 1]")
    s = DetectionScorer(client, examples_per_prompt=5)
    b = scripted.bucket(test=[0, 1], nonactivating=[2, 3, 4])
    [r] = s.score_many(TextFormatter(scripted.WordsCache(TEXTS)), [(Explanation(1, 0, "x", "llm"), b)])
    assert len(client.requests) == 1 and r.score == 0.5
