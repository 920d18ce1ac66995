"""saes.style: every figure's colour, marker and label of an architecture is its module's
presentation, looked up by name or label, in the registry's order."""

import probsae
from probsae.saes import get_class
from probsae.saes.style import arch_order, colour, known, label, style


def test_style_is_the_registered_presentation():
    for arch in probsae.ARCHITECTURES:
        p = get_class(arch).presentation
        assert style(arch) == p and style(p.label) == p and colour(arch) == p.color
    assert label("prob_topk") == "Probabilistic TopK" and style("Probabilistic TopK") == style("prob_topk")
    assert colour("prob_topk") == "#D55E00" and colour("topk") == "#0072B2"   # the dashboard's CSS needs hex
    assert len({colour(a) for a in probsae.ARCHITECTURES}) == len(probsae.ARCHITECTURES)


def test_order_follows_the_registry_and_unknown_names_fall_back():
    assert [arch_order(a) for a in probsae.ARCHITECTURES] == list(range(len(probsae.ARCHITECTURES)))
    assert arch_order("TopK") == arch_order("topk")
    assert arch_order("unknown-arch") == len(probsae.ARCHITECTURES) and not known("unknown-arch")
    fallback = style("unknown-arch")
    assert fallback == style("unknown-arch") and fallback.label == "unknown-arch"       # stable
    assert fallback.color not in {colour(a) for a in probsae.ARCHITECTURES}
