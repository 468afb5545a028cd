"""What common kinds of documents call themselves in French, German, Spanish, Italian, Dutch,
Portuguese, Hebrew, Arabic and Russian, so that zero-shot name evidence works for a label named in English ("invoice") on a
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
    "חשבונית",
    "חשבונית מס",
    "فاتورة",
    "فاتورة ضريبية",
    "счет фактура",
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
    "תלוש שכר",
    "תלוש משכורת",
    "قسيمة راتب",
    "كشف راتب",
    "расчетный листок",
    "расчетный лист",
]
_CONTRACT = [
    "contrat",
    "vertrag",
    "contrato",
    "contratto",
    "overeenkomst",
    "contract",
    "חוזה",
    "הסכם",
    "عقد",
    "договор",
    "контракт",
]
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
    "הזמנת רכש",
    "أمر شراء",
    "заказ на поставку",
]
_RECEIPT = [
    "recu",
    "quittung",
    "kassenbon",
    "recibo",
    "ricevuta",
    "scontrino",
    "kwitantie",
    "קבלה",
    "إيصال",
    "квитанция",
    "кассовый чек",
]
_BANK_STATEMENT = [
    "releve de compte",
    "releve bancaire",
    "kontoauszug",
    "extracto bancario",
    "estratto conto",
    "rekeningafschrift",
    "extrato bancario",
    "דף חשבון",
    "كشف حساب",
    "выписка по счету",
    "банковская выписка",
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
_RESUME = ["curriculum vitae", "lebenslauf", "קורות חיים", "سيرة ذاتية", "резюме"]

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
    # Kinds that look like the ones above (amounts, parties, goods) but are none of them.
    (["sales order", "order confirmation"], ["sales order", "order confirmation"]),
    (["bill of lading", "waybill"], ["bill of lading", "waybill", "consignment note"]),
    (["warranty", "guarantee"], ["warranty", "warranty certificate", "warranty card"]),
    (["packing list"], ["packing list"]),
]
# Lines only a document of the kind carries, whatever it calls itself (a US pay stub may never
# say "pay stub"): they count as the kind's names in the text, not as titles.
HALLMARKS: dict[str, list[str]] = {
    "invoice": ["amount due", "balance due", "total due"],
    "payslip": ["net pay", "gross pay", "net salary", "gross salary", "take home pay"],
}


def name_term(phrase: str) -> str:
    """A name as zero_shot matches it: one word stemmed, several words joined ("paystub")."""
    words = tokens(phrase)
    return stem(words[0]) if len(words) == 1 else "".join(words)


_BY_TERM: dict[str, frozenset[str]] = {}
_KIND_BY_TERM: dict[str, set[int]] = {}  # identifying name or title -> kinds
_KIND_BY_TITLE: dict[str, int] = {}
for _kind, (_identifying, _titles) in enumerate(KINDS):
    _names = frozenset(name_term(n) for n in _titles)
    _hallmarks = frozenset(name_term(n) for n in HALLMARKS.get(_identifying[0], []))
    for _term in (name_term(n) for n in _identifying):
        _BY_TERM[_term] = _BY_TERM.get(_term, frozenset()) | _names | _hallmarks
    for _term in {name_term(n) for n in _identifying} | _names:
        _KIND_BY_TERM.setdefault(_term, set()).add(_kind)
    for _term in _names:
        _KIND_BY_TITLE.setdefault(_term, _kind)

# Words after a kind's name that make it a field label ("Purchase Order No", "Invoice Date"),
# which a document of another kind may carry above its own title.
_FIELD_WORDS = frozenset({"no", "nr", "number", "num", "date", "id", "ref", "reference", "to"})
_TITLE_LINE_WORDS = 8


def kinds_hallmarked(words: list[str]) -> set[str]:
    """The name terms of the kinds whose hallmark lines these words contain: a description
    saying "with deductions and net pay" describes a pay slip, whatever its label is called."""
    joined = {a + b for a, b in zip(words, words[1:], strict=False)}
    joined |= {a + b + c for a, b, c in zip(words, words[1:], words[2:], strict=False)}
    return {
        name_term(kind)
        for kind, hallmarks in HALLMARKS.items()
        if any(name_term(h) in joined for h in hallmarks)
    }


def translations(names: set[str]) -> set[str]:
    """The titles (and hallmark lines) of the kinds that these name terms identify."""
    return set().union(*(_BY_TERM.get(n, frozenset()) for n in names))


def kinds_named(names: set[str]) -> set[int]:
    """The kinds (indexes into KINDS) that these name terms identify."""
    return set().union(*(_KIND_BY_TERM.get(n, set()) for n in names))


def title_kind(opening: str) -> int | None:
    """The kind a document titles itself with: the first kind named in its opening, when that
    line reads as a title (a short line, not a field label such as "Place of receipt:" or
    "Purchase Order No"). None when the opening names no kind or names one only in a field."""
    for line in opening.splitlines():
        words = tokens(line)
        for start in range(len(words)):
            for length in (3, 2, 1):
                if start + length > len(words):
                    continue
                kind = _KIND_BY_TITLE.get(name_term(" ".join(words[start : start + length])))
                if kind is None:
                    continue
                following = words[start + length] if start + length < len(words) else ""
                titled = (
                    len(words) <= _TITLE_LINE_WORDS
                    and not line.rstrip().endswith(":")
                    and following not in _FIELD_WORDS
                )
                return kind if titled else None
    return None
