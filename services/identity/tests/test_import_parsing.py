"""Uploaded CSV/XLSX files become rows: encodings, headers, sizes, formulas, merged cells, numbers."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from collections.abc import Sequence
from datetime import date, datetime
from xml.sax.saxutils import escape

import openpyxl
import pytest

from identity.imports.parsing import ParsedTable, parse_upload, require_columns
from identity.testing import xlsx
from kit.errors import InvalidInput, MalformedRequest, PayloadTooLarge, Problem, UnsupportedMediaType

COLUMNS = {
    "姓名": "name",
    "name": "name",
    "学籍号": "student_number",
    "Student Number": "student_number",
    "手机号": "phone",
    "phone": "phone",
    "学校标识码": "school_code",
    "出生日期": "birth_date",
    "入学时间": "enrolled_at",
    "备注": "note",
}
SN1 = "G11010519491231002X"
SN2 = "G34052419800101001X"
MB = 1024 * 1024


def parse(filename: str, content: bytes, *, max_bytes: int = 10 * MB, max_rows: int = 1000) -> ParsedTable:
    return parse_upload(filename, content, max_bytes=max_bytes, max_rows=max_rows, columns=COLUMNS)


def fails(exc_type: type[Problem], filename: str, content: bytes, **kwargs: int) -> Problem:
    with pytest.raises(exc_type) as caught:
        parse(filename, content, **kwargs)
    problem = caught.value
    assert problem.detail and " / " in problem.detail, problem.detail
    return problem


def raw_xlsx(sheet_data: str, *, shared: Sequence[str] = (), tail: str = "", padding: int = 0) -> bytes:
    """A workbook written the way Excel writes it (shared strings, styles), from raw sheet XML."""
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rels = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    package = "http://schemas.openxmlformats.org/package/2006/relationships"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
        )
        archive.writestr(
            "_rels/.rels",
            f'<Relationships xmlns="{package}"><Relationship Id="rId1" Target="xl/workbook.xml" '
            f'Type="{rels}/officeDocument"/></Relationships>',
        )
        archive.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{main}" xmlns:r="{rels}"><workbookPr/><sheets>'
            '<sheet name="名单" sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        archive.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<Relationships xmlns="{package}">'
            f'<Relationship Id="rId1" Type="{rels}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{rels}/styles" Target="styles.xml"/>'
            f'<Relationship Id="rId3" Type="{rels}/sharedStrings" Target="/xl/sharedStrings.xml"/>'
            "</Relationships>",
        )
        # Style 1: built-in 14 (short date); 2: zh-CN built-in 31 (yyyy"年"m"月"d"日"); 3: custom date.
        archive.writestr(
            "xl/styles.xml",
            f'<styleSheet xmlns="{main}"><numFmts count="1"><numFmt numFmtId="176" '
            'formatCode="yyyy/m/d;@"/></numFmts><cellXfs count="4"><xf numFmtId="0"/><xf numFmtId="14"/>'
            '<xf numFmtId="31"/><xf numFmtId="176"/></cellXfs></styleSheet>',
        )
        strings = "".join(item if item.startswith("<") else f"<si><t>{escape(item)}</t></si>" for item in shared)
        archive.writestr("xl/sharedStrings.xml", f'<sst xmlns="{main}">{strings}</sst>')
        archive.writestr(
            "xl/worksheets/sheet1.xml",
            f'<worksheet xmlns="{main}">{" " * padding}<sheetData>{sheet_data}</sheetData>{tail}</worksheet>',
        )
    return buffer.getvalue()


# --- CSV ------------------------------------------------------------------------------------------


def test_utf8_csv() -> None:
    content = f"name, Student  Number ,手机号\n张三,{SN1},13800138000\n李四,{SN2},\n".encode()
    table = parse("students.csv", content)
    assert (table.format, table.encoding, table.encoding_label) == ("csv", "utf-8", "UTF-8")
    assert table.headers == ["name", "student_number", "phone"]
    assert table.rows == [
        (2, {"name": "张三", "student_number": SN1, "phone": "13800138000"}),
        (3, {"name": "李四", "student_number": SN2, "phone": ""}),
    ]
    assert table.content_sha256 == hashlib.sha256(content).hexdigest()


def test_utf8_bom_csv() -> None:
    table = parse("students.CSV", f"姓名,学籍号\r\n张三,{SN1}\r\n".encode("utf-8-sig"))
    assert table.encoding == "utf-8-sig"
    assert table.headers == ["name", "student_number"]
    assert table.rows == [(2, {"name": "张三", "student_number": SN1})]


def test_gbk_csv() -> None:
    table = parse("学生名单.csv", f"姓名,学籍号\n张三,{SN1}\n欧阳娜娜,{SN2}\n".encode("gbk"))
    assert (table.encoding, table.encoding_label) == ("gb18030", "GBK/GB18030")
    assert [values["name"] for _, values in table.rows] == ["张三", "欧阳娜娜"]


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe" + "姓名,学籍号\n".encode("utf-16-le"),  # Excel "Unicode text"
        b"name,phone\n\x80\xff,1\n",  # neither UTF-8 nor GB18030
        b"\xef\xbb\xbfname\n\xff\n",  # BOM but not UTF-8
    ],
)
def test_undecodable_csv(content: bytes) -> None:
    problem = fails(MalformedRequest, "a.csv", content)
    assert "UTF-8" in (problem.detail or "")
    assert problem.errors[0].field == "file"


def test_csv_quoting_line_breaks_blank_lines_and_row_numbers() -> None:
    content = (
        "\r\n"  # row 1 is blank: the header is on row 2 as the spreadsheet shows it
        f'姓名,学籍号,备注\r\n"张,三",{SN1},"第一行\r\n第二行"\r\n,,\r\n  \r\n李四,{SN2},"说""引号"""\r\n'
        f'王五,="013800138000",\r\n'
    ).encode()
    table = parse("a.csv", content)
    assert table.rows == [
        (3, {"name": "张,三", "student_number": SN1, "note": "第一行\r\n第二行"}),
        (6, {"name": "李四", "student_number": SN2, "note": '说"引号"'}),
        (7, {"name": "王五", "student_number": "013800138000", "note": ""}),
    ]


def test_trailing_empty_cells_are_fine_but_extra_values_are_not() -> None:
    assert parse("a.csv", f"姓名,学籍号,,\n张三,{SN1},,\n".encode()).headers == ["name", "student_number"]
    problem = fails(InvalidInput, "a.csv", f"姓名,学籍号\n张三,{SN1}\n李四,{SN2},多余\n".encode())
    assert [(e.row, e.code, e.field) for e in problem.errors] == [(3, "no_header", "file")]
    assert "C" in problem.errors[0].message


def test_unbalanced_quote() -> None:
    problem = fails(MalformedRequest, "a.csv", f'姓名,学籍号\n"张三,{SN1}\n'.encode())
    assert problem.errors[0].row == 2


def test_unknown_and_duplicate_headers() -> None:
    problem = fails(InvalidInput, "a.csv", "姓名,班主任,学籍号,Class\n张三,王老师,x,1\n".encode())
    assert [(e.field, e.code, e.row) for e in problem.errors] == [
        ("班主任", "unknown_column", 1),
        ("Class", "unknown_column", 1),
    ]
    assert "班主任" in (problem.detail or "") and "Class" in (problem.detail or "")
    assert "student_number (学籍号/Student Number)" in (problem.detail or "")
    problem = fails(InvalidInput, "a.csv", "姓名,学籍号, NAME \n张三,x,y\n".encode())
    assert [(e.field, e.code) for e in problem.errors] == [("name", "duplicate_column")]


def test_full_width_header() -> None:
    assert parse("a.csv", "ｎａｍｅ\u3000,Student\u00a0Number\n张三,x\n".encode()).headers == [
        "name",
        "student_number",
    ]


def test_conflicting_column_mapping_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="maps to both"):
        parse_upload("a.csv", b"a\n1\n", max_bytes=MB, max_rows=10, columns={"Name": "name", "name ": "other"})


def test_require_columns() -> None:
    table = parse("a.csv", "姓名\n张三\n".encode())
    require_columns(table, ["name"])
    with pytest.raises(InvalidInput) as caught:
        require_columns(table, ["name", "student_number", "phone"], columns=COLUMNS)
    assert [(e.field, e.code) for e in caught.value.errors] == [
        ("student_number", "missing_column"),
        ("phone", "missing_column"),
    ]
    assert "学籍号" in (caught.value.detail or "") and "手机号" in (caught.value.detail or "")


@pytest.mark.parametrize("content", [b"", b"\r\n \r\n", "\ufeff".encode()])
def test_empty_file(content: bytes) -> None:
    assert fails(InvalidInput, "a.csv", content).errors[0].code == "empty_file"


def test_header_only() -> None:
    assert fails(InvalidInput, "a.csv", "姓名,学籍号\n,\n".encode()).errors[0].code == "no_data"
    assert fails(InvalidInput, "a.xlsx", xlsx([["姓名"]])).errors[0].code == "no_data"


def test_too_large() -> None:
    content = "姓名\n".encode() + b"x\n" * (3 * MB)
    problem = fails(PayloadTooLarge, "a.csv", content, max_bytes=5 * MB)
    assert parse("a.csv", "姓名\n张三\n".encode(), max_bytes=5 * MB).rows
    problem = fails(PayloadTooLarge, "a.csv", content + b"x" * (MB - len("姓名\n".encode())), max_bytes=6 * MB)
    assert "6 MB" in (problem.detail or "")
    assert "KB" in (fails(PayloadTooLarge, "a.csv", b"x" * 600, max_bytes=512).detail or "")


def test_too_many_rows() -> None:
    rows = "".join(f"学生{i}\n" for i in range(4))
    assert len(parse("a.csv", f"姓名\n{rows}".encode(), max_rows=4).rows) == 4
    problem = fails(PayloadTooLarge, "a.csv", f"姓名\n{rows}学生4\n".encode(), max_rows=4)
    assert "4" in (problem.detail or "") and problem.errors[0].code == "too_many_rows"
    problem = fails(PayloadTooLarge, "a.xlsx", xlsx([["姓名"], *[[f"学生{i}"] for i in range(5)]]), max_rows=4)


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("a.txt", b"name\nx\n"),
        ("a", b"name\nx\n"),
        ("a.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100),
        ("a.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100),  # password-protected
        ("a.xlsx", b"name,phone\nx,1\n"),  # a CSV named .xlsx
        ("a.xlsx", b"%PDF-1.7 not a spreadsheet"),
    ],
)
def test_unsupported_files(filename: str, content: bytes) -> None:
    fails(UnsupportedMediaType, filename, content)


def test_xlsx_named_csv() -> None:
    fails(UnsupportedMediaType, "a.csv", xlsx([["姓名"], ["张三"]]))


def test_zip_that_is_not_a_workbook() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<document/>")
    fails(UnsupportedMediaType, "a.xlsx", buffer.getvalue())


def test_damaged_xlsx() -> None:
    content = xlsx([["姓名"], ["张三"]])
    fails(MalformedRequest, "a.xlsx", content[: len(content) // 2])
    fails(MalformedRequest, "a.xlsx", raw_xlsx('<row r="1"><c r="A1" t="s"><v>0</v></c>', shared=["姓名"]))


# --- XLSX -----------------------------------------------------------------------------------------


def test_xlsx() -> None:
    table = parse("a.xlsx", xlsx([["姓名", " 学籍号 ", None], ["张三 ", SN1], [None, None], ["李四", SN2.lower()]]))
    assert (table.format, table.encoding, table.encoding_label) == ("xlsx", None, None)
    assert table.headers == ["name", "student_number"]
    assert table.rows == [
        (2, {"name": "张三", "student_number": SN1}),
        (4, {"name": "李四", "student_number": SN2.lower()}),
    ]


def test_xlsx_numbers_dates_and_booleans() -> None:
    content = xlsx(
        [
            ["姓名", "手机号", "学校标识码", "出生日期", "入学时间", "备注"],
            ["张三", 13800138000, 1101051234, date(2015, 9, 1), datetime(2021, 9, 1, 8, 30), 3.5],
            ["李四", 13900139000.0, "0101051234", datetime(2015, 1, 2), None, True],
            ["王五", "13700137000", 1101051234.0, "2015-03-04", None, -2],
        ]
    )
    rows = [values for _, values in parse("a.xlsx", content).rows]
    assert rows == [
        {
            "name": "张三",
            "phone": "13800138000",
            "school_code": "1101051234",
            "birth_date": "2015-09-01",
            "enrolled_at": "2021-09-01T08:30:00",
            "note": "3.5",
        },
        {
            "name": "李四",
            "phone": "13900139000",
            "school_code": "0101051234",
            "birth_date": "2015-01-02",
            "enrolled_at": "",
            "note": "TRUE",
        },
        {
            "name": "王五",
            "phone": "13700137000",
            "school_code": "1101051234",
            "birth_date": "2015-03-04",
            "enrolled_at": "",
            "note": "-2",
        },
    ]


def test_xlsx_id_number_typed_as_a_number_is_refused() -> None:
    problem = fails(InvalidInput, "a.xlsx", xlsx([["姓名", "备注"], ["张三", 110105194912310020]]))
    assert [(e.row, e.code, e.field) for e in problem.errors] == [(2, "number_precision", "note")]
    assert "B2" in problem.errors[0].message


def test_xlsx_formulas_are_refused() -> None:
    content = xlsx([["姓名", "学籍号"], ["张三", SN1], ["李四", '="G"&"34052419800101001X"'], ["=A2", SN1]])
    problem = fails(InvalidInput, "a.xlsx", content)
    assert [(e.row, e.code, e.field) for e in problem.errors] == [
        (3, "formula", "student_number"),
        (4, "formula", "name"),
    ]
    assert "B3" in (problem.detail or "") and "A4" in (problem.detail or "")
    assert "B3" in problem.errors[0].message and "数值" in (problem.detail or "")


def test_xlsx_error_values_are_refused() -> None:
    problem = fails(InvalidInput, "a.xlsx", xlsx([["姓名", "学籍号"], ["张三", "#N/A"]]))
    assert [(e.row, e.code, e.field) for e in problem.errors] == [(2, "error_value", "student_number")]


def test_xlsx_merged_header_is_refused() -> None:
    problem = fails(
        InvalidInput, "a.xlsx", xlsx([["学生信息", None], ["姓名", "学籍号"], ["张三", SN1]], merge="A1:B1")
    )
    assert "A1:B1" in (problem.detail or "") and "取消合并" in (problem.detail or "")
    assert [(e.row, e.code) for e in problem.errors] == [(1, "merged_cells")]


def test_xlsx_merged_data_cells_are_refused() -> None:
    content = xlsx([["备注", "姓名"], ["三年级", "张三"], [None, "李四"]], merge="A2:A3")
    problem = fails(InvalidInput, "a.xlsx", content)
    assert "A2:A3" in (problem.detail or "")
    assert [(e.row, e.code) for e in problem.errors] == [(2, "merged_cells")]


def test_xlsx_merged_cells_outside_the_data_are_ignored() -> None:
    content = xlsx([["姓名"], ["张三"]], merge="C5:D6")
    assert parse("a.xlsx", content).rows == [(2, {"name": "张三"})]


def test_xlsx_stray_values_and_unknown_headers() -> None:
    problem = fails(InvalidInput, "a.xlsx", xlsx([["姓名", None, "学籍号"], ["张三", "?", SN1]]))
    assert [(e.row, e.code) for e in problem.errors] == [(2, "no_header")]
    problem = fails(InvalidInput, "a.xlsx", xlsx([["姓名", "性别"], ["张三", "男"]]))
    assert [(e.field, e.code) for e in problem.errors] == [("性别", "unknown_column")]


def test_xlsx_first_visible_sheet() -> None:
    workbook = openpyxl.Workbook()
    helper = workbook.active
    assert helper is not None
    helper.title = "字典"
    helper.append(["代码", "名称"])
    helper.sheet_state = "hidden"
    roster = workbook.create_sheet("名单")
    roster.append(["姓名"])
    roster.append(["张三"])
    workbook.create_sheet("其他").append(["备注"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    assert parse("a.xlsx", buffer.getvalue()).rows == [(2, {"name": "张三"})]


def test_excel_style_workbook() -> None:
    """Shared strings with rich-text runs, phonetic hints and _xHHHH_ escapes; every cell type."""
    shared = [
        "姓名",
        "备注",
        "出生日期",
        '<si><r><t>张</t></r><r><rPr><b/></rPr><t xml:space="preserve">三 </t></r>'
        '<rPh sb="0" eb="1"><t>zhang</t></rPh></si>',
        "第一行_x000D_\n第二行",
    ]
    sheet_data = (
        '<row r="1" spans="1:3"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c>'
        '<c r="C1" t="s"><v>2</v></c></row>'
        '<row r="2"><c r="A2" t="s"><v>3</v></c><c r="B2" t="s"><v>4</v></c>'
        '<c r="C2" s="1"><v>42248</v></c></row>'
        '<row r="3"><c r="A3" t="inlineStr"><is><t>李四</t></is></c><c r="B3" t="b"><v>0</v></c>'
        '<c r="C3" s="2"><v>42005.0</v></c></row>'
        '<row r="5" customFormat="1" s="3"><c r="A5" s="3"/><c r="B5"/></row>'  # styled but empty
        # No cell references: columns are counted.
        '<row r="6"><c t="str"><v>王五</v></c><c><v>1.38E+10</v></c><c s="3"><v>42370</v></c></row>'
        '<row r="7"><c r="A7" t="s"><v>0</v></c><c r="C7" t="d"><v>2016-02-29T00:00:00</v></c></row>'
    )
    table = parse("a.xlsx", raw_xlsx(sheet_data, shared=shared))
    assert table.rows == [
        (2, {"name": "张三", "note": "第一行\r\n第二行", "birth_date": "2015-09-01"}),
        (3, {"name": "李四", "note": "FALSE", "birth_date": "2015-01-01"}),
        (6, {"name": "王五", "note": "13800000000", "birth_date": "2016-01-01"}),
        (7, {"name": "姓名", "note": "", "birth_date": "2016-02-29"}),
    ]


def test_xlsx_that_expands_too_much() -> None:
    content = raw_xlsx('<row r="1"><c r="A1" t="s"><v>0</v></c></row>', shared=["姓名"], padding=4 * MB)
    assert len(content) < 60 * 1024
    problem = fails(PayloadTooLarge, "a.xlsx", content, max_bytes=64 * 1024)
    assert problem.errors[0].code == "xlsx_too_large"


def test_fifty_thousand_rows() -> None:
    headers = [
        "姓名",
        "学籍号",
        "手机号",
        "学校标识码",
        "出生日期",
        "备注",
        "入学时间",
        "班级",
        "年级",
        "性别",
    ]
    shared = [*headers, SN1, "三年级（2）班", "男"]
    header = "".join(f'<c r="{chr(65 + i)}1" t="s"><v>{i}</v></c>' for i in range(10))
    cells = [f'<row r="1">{header}</row>']
    for row in range(2, 50_002):
        cells.append(
            f'<row r="{row}"><c r="A{row}" t="inlineStr"><is><t>学生{row}</t></is></c>'
            f'<c r="B{row}" t="s"><v>10</v></c><c r="C{row}"><v>{13800000000 + row}</v></c>'
            f'<c r="D{row}"><v>1101051234</v></c><c r="E{row}" s="1"><v>{42000 + row % 1000}</v></c>'
            f'<c r="F{row}" t="s"><v>11</v></c><c r="G{row}" s="3"><v>44440</v></c>'
            f'<c r="H{row}" t="s"><v>11</v></c><c r="I{row}"><v>3</v></c>'
            f'<c r="J{row}" t="s"><v>12</v></c></row>'
        )
    content = raw_xlsx("".join(cells), shared=shared)
    started = time.perf_counter()
    table = parse_upload(
        "big.xlsx", content, max_bytes=20 * MB, max_rows=50_000, columns={name: name for name in headers}
    )
    elapsed = time.perf_counter() - started
    assert len(table.rows) == 50_000
    assert table.rows[-1] == (
        50_001,
        {
            "姓名": "学生50001",
            "学籍号": SN1,
            "手机号": "13800050001",
            "学校标识码": "1101051234",
            "出生日期": "2014-12-28",  # serial 42001
            "备注": "三年级（2）班",
            "入学时间": "2021-09-01",
            "班级": "三年级（2）班",
            "年级": "3",
            "性别": "男",
        },
    )
    print(f"50,000-row XLSX ({len(content) / MB:.1f} MB) parsed in {elapsed:.2f} s")
