"""Few-shot selection: nearest examples, one per label first, within a token budget."""

from backend.backends.base import LabelledText
from backend.backends.llm.budget import count_tokens
from backend.classifiers.examples import most_similar

EXAMPLES = [
    LabelledText("invoice", "Invoice 7 from Northwind: widgets, total due 120 EUR, net 30"),
    LabelledText("invoice", "Electricity bill: meter reading, kWh used, amount payable"),
    LabelledText("contract", "Services agreement between Acme and Beta; term, termination"),
    LabelledText("other", "Gardening club minutes: roses and tulips"),
]


def test_nearest_of_each_label_first_then_the_nearest_of_the_rest():
    picked = most_similar("Invoice 9 from Northwind: gadgets, total due 80 EUR", EXAMPLES)
    assert picked[0] == EXAMPLES[0] and {e.label for e in picked} == {
        "invoice",
        "contract",
        "other",
    }
    four = most_similar("Invoice 9 from Northwind: total due 80 EUR", EXAMPLES, limit=4)
    assert four[-1] == EXAMPLES[1]  # a second invoice only once every label has one
    near_contract = most_similar("agreement between Acme and Gamma; termination", EXAMPLES)
    assert near_contract[0].label == "contract"


def test_examples_are_cut_to_the_token_budget():
    long = [LabelledText(e.label, e.text + " lorem ipsum dolor" * 2000) for e in EXAMPLES]
    picked = most_similar("Invoice from Northwind", long, token_budget=300)
    assert len(picked) == 3
    assert sum(count_tokens(e.text) for e in picked) <= 300
    assert picked[0].text.startswith("Invoice 7 from Northwind")


def test_no_text_no_examples_or_no_room():
    assert most_similar("", EXAMPLES, limit=2) == [EXAMPLES[0], EXAMPLES[2]]  # input order
    assert most_similar("anything", []) == []
    assert most_similar("anything", EXAMPLES, limit=0) == []
