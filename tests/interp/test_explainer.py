from probsae.interp.explainer import LLMExplainer, TextFormatter, parse_explanation_lenient


EXCERPTS = ["Land of steady habits, a nickname sometimes given to the State of Connecticut."]


def test_lenient_parse_takes_the_first_sentence():
    assert parse_explanation_lenient("The feature fires on crash words. It also...\nmore", EXCERPTS) == (
        "The feature fires on crash words.", True)
    assert parse_explanation_lenient('\n**"Words about cats"**\n', EXCERPTS) == ("Words about cats", True)
    assert parse_explanation_lenient("1. Cat words. 2. Dogs.", EXCERPTS) == ("Cat words.", True)
    # the marker wins, and is not counted as lenient
    assert parse_explanation_lenient("reasoning\nEXPLANATION: the token cat", EXCERPTS) == ("the token cat", False)


def test_lenient_parse_rejects_empty_copied_and_looping_replies():
    assert parse_explanation_lenient("", EXCERPTS) == (None, False)
    assert parse_explanation_lenient("  \n **  \n", EXCERPTS) == (None, False)
    copied = "Excerpt 1: Land of steady habits, a nickname sometimes given to the State"
    assert parse_explanation_lenient(copied, EXCERPTS) == (None, False)
    assert parse_explanation_lenient("Excerpt 1:", EXCERPTS) == (None, False)     # the prompt echoed
    assert parse_explanation_lenient("Most active: \"cat\" 10", EXCERPTS) == (None, False)
    loop = "The feature is a feature of the feature of the feature of the feature"
    assert parse_explanation_lenient(loop, EXCERPTS) == (None, False)


def test_lenient_explainer_counts_its_explanations(scripted):
    fmt = TextFormatter(scripted.WordsCache(["a cat sat", "the cat ran"]))
    items = [(3, 0, [scripted.example(0, True)]), (3, 1, [scripted.example(1, True)])]
    replies = iter(["Cats in text.", "EXPLANATION: cats"])
    strict = LLMExplainer(scripted.ScriptedClient(lambda m: "Cats in text.")).explain_many(fmt, items)
    assert [e.text for e in strict] == [None, None]
    lenient = LLMExplainer(scripted.ScriptedClient(lambda m: next(replies)), explanation_format="lenient").explain_many(fmt, items)
    assert [(e.text, e.lenient) for e in lenient] == [("Cats in text.", True), ("cats", False)]
    assert lenient[0].to_json()["lenient"] is True and "lenient" not in lenient[1].to_json()
