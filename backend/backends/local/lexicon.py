"""What common kinds of documents call themselves in French, German, Spanish, Italian, Dutch and
Portuguese, so that zero-shot name evidence works for a label named in English ("invoice") on a
document titled in another language ("Facture", "Rechnung").

General vocabulary, not fitted to any dataset: the standard titles of each kind in each
language. Phrases are matched after accent folding (text.normalize), up to three words.
"""

from backend.backends.local.text import stem, tokens

_INVOICE = [
    "facture",
    "rechnung",
    "factura",
    "fattura",
    "factuur",
    "fatura",
    "nota fiscal",
]
_PAYSLIP = [
    "bulletin de paie",
    "bulletin de salaire",
    "fiche de paie",
    "lohnabrechnung",
    "gehaltsabrechnung",
    "entgeltabrechnung",
    "verdienstabrechnung",
    "nomina",
    "recibo de nomina",
    "busta paga",
    "cedolino",
    "loonstrook",
    "salarisstrook",
    "holerite",
    "contracheque",
    "recibo de vencimento",
]
_CONTRACT = ["contrat", "vertrag", "contrato", "contratto", "overeenkomst", "contract"]
_PURCHASE_ORDER = [
    "bon de commande",
    "bestellung",
    "bestellschein",
    "orden de compra",
    "ordine di acquisto",
    "ordine d acquisto",
    "inkooporder",
    "bestelbon",
    "pedido de compra",
    "ordem de compra",
]
_RECEIPT = ["recu", "quittung", "kassenbon", "recibo", "ricevuta", "scontrino", "kwitantie"]
_BANK_STATEMENT = [
    "releve de compte",
    "releve bancaire",
    "kontoauszug",
    "extracto bancario",
    "estratto conto",
    "rekeningafschrift",
    "extrato bancario",
]
_QUOTE = ["devis", "angebot", "presupuesto", "cotizacion", "preventivo", "offerte", "orcamento"]
# Not the French "avoir" alone: it is also the verb "to have".
_CREDIT_NOTE = ["facture d avoir", "gutschrift", "nota de credito", "nota di credito", "creditnota"]
_DELIVERY_NOTE = [
    "bon de livraison",
    "lieferschein",
    "albaran",
    "documento di trasporto",
    "pakbon",
    "guia de remessa",
]
_RESUME = ["curriculum vitae", "lebenslauf"]

# Kinds of documents: the English names that identify a kind (as a label or a description's
# head noun gives them), and the names a document of the kind is titled with, in English and
# other languages. Words common outside titles ("bill", "agreement", "estimate") identify a kind
# but are not added as names: "billing address" would make a purchase order an invoice.
_PAY_NAMES = [
    "payslip",
    "pay slip",
    "pay stub",
    "paystub",
    "salary slip",
    "wage slip",
    "pay statement",
    "earnings statement",
]
KINDS: list[tuple[list[str], list[str]]] = [
    (["invoice", "bill"], ["invoice", *_INVOICE]),
    (_PAY_NAMES, _PAY_NAMES + _PAYSLIP),
    (["contract", "agreement"], ["contract", *_CONTRACT]),
    (["purchase order"], ["purchase order", *_PURCHASE_ORDER]),
    (["receipt"], ["receipt", *_RECEIPT]),
    (["bank statement", "account statement"], ["bank statement", *_BANK_STATEMENT]),
    (["quote", "quotation", "estimate"], ["quotation", *_QUOTE]),
    (["credit note", "credit memo"], ["credit note", "credit memo", *_CREDIT_NOTE]),
    (["delivery note", "packing slip"], ["delivery note", "packing slip", *_DELIVERY_NOTE]),
    (["resume", "cv"], ["resume", "curriculum vitae", *_RESUME]),
]


def name_term(phrase: str) -> str:
    """A name as zero_shot matches it: one word stemmed, several words joined ("paystub")."""
    words = tokens(phrase)
    return stem(words[0]) if len(words) == 1 else "".join(words)


_BY_TERM: dict[str, frozenset[str]] = {}
for _identifying, _titles in KINDS:
    _names = frozenset(name_term(n) for n in _titles)
    for _term in (name_term(n) for n in _identifying):
        _BY_TERM[_term] = _BY_TERM.get(_term, frozenset()) | _names


def translations(names: set[str]) -> set[str]:
    """The titles of the kinds that these name terms identify."""
    return set().union(*(_BY_TERM.get(n, frozenset()) for n in names))
