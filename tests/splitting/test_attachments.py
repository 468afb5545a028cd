"""group_attachments: which segments are attachments of the document before them."""

from backend.splitting.attachments import groups, read_part

RETURN = "Form\n1040 \n2021\nU.S. Individual Income Tax Return \nDepartment of the Treasury"
RETURN_PAGE_2 = "Form 1040 (2021)\nPage 2\n16\nTax (see instructions)."
SCHEDULE_A = "SCHEDULE A \n(Form 1040) \nItemized Deductions\nAttach to Form 1040 or 1040-SR."
SCHEDULE_8812 = "SCHEDULE 8812 \n(Form 1040)\nCredits for Qualifying Children\nAttach to Form 1040"
W9 = "Form W-9\n(Rev. October 2018)\nRequest for Taxpayer Identification Number"
INVOICE = "INVOICE\nInvoice No. 1001\nNorthwind Traders"
NDA = "NON-DISCLOSURE AGREEMENT\nThis agreement is made between"
EXHIBIT = "Exhibit A\nList of confidential materials"


def test_parts_name_their_form():
    assert read_part(RETURN).form == "1040" and read_part(RETURN).attached_to is None
    assert read_part(SCHEDULE_A).attached_to == "1040"
    assert read_part(EXHIBIT).exhibit and not read_part(NDA).exhibit
    assert read_part(W9).attached_to is None


def test_a_return_and_its_schedules_are_one_group():
    assert groups([RETURN, SCHEDULE_A, SCHEDULE_8812, INVOICE]) == [[0, 1, 2], [3]]
    # Schedules without their return before them stay on their own (and with each other).
    assert groups([INVOICE, SCHEDULE_A, SCHEDULE_8812]) == [[0], [1, 2]]
    assert groups([W9, SCHEDULE_A]) == [[0], [1]]
    assert groups([NDA, EXHIBIT, INVOICE]) == [[0, 1], [2]]


def test_another_taxpayers_schedule_is_not_grouped():
    mine, theirs = f"{RETURN}\nSSN 123-45-6789", f"{SCHEDULE_A}\nSSN 987-65-4321"
    assert groups([mine, theirs]) == [[0], [1]]
    assert groups([mine, f"{SCHEDULE_A}\nSSN 123-45-6789"]) == [[0, 1]]
