"""Statements as files for the city's finance office: CSV (UTF-8 with BOM, so Excel shows Chinese) and XLSX.

Both carry the same content: who and which month, the state (草稿 while issued, 已审核 once approved), one row per
line, then the totals per district and the city total. Amounts are given in 元 (two decimals) and in fen.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from metering.statements.models import Statement, StatementLine
from metering.statements.service import Totals

STATE_LABELS = {"issued": "草稿（待审核）Draft, awaiting approval", "approved": "已审核 Approved"}
METER_LABELS = {
    "launch": "启动次数 launches", "api_call": "接口调用 API calls",
    "monthly_active_user": "月活跃用户 monthly active users", "minute": "使用分钟 minutes",
    "reported_unit": "上报单位 reported units",
}  # fmt: skip

LINE_HEADER = [
    "明细编号 Line", "应用 App", "应用编号 App ID", "学校 School", "学校编号 School ID", "区县 District",
    "计量单位 Meter", "使用月份 Usage month", "补计 Late usage", "数量 Quantity", "单价（元）Unit price (yuan)",
    "单价（分）Unit price (fen)", "原价（元）Gross (yuan)", "原价（分）Gross (fen)", "封顶（分）Cap (fen)",
    "封顶减免（元）Cap reduction (yuan)", "封顶减免（分）Cap reduction (fen)", "调整（元）Adjustment (yuan)",
    "调整（分）Adjustment (fen)", "应付（元）Amount due (yuan)", "应付（分）Amount due (fen)",
]  # fmt: skip
TOTALS_HEADER = [
    "区县 District", "区县编号 District ID", "明细数 Lines", "原价（元）Gross (yuan)", "原价（分）Gross (fen)",
    "封顶减免（元）Cap reduction (yuan)", "封顶减免（分）Cap reduction (fen)", "调整（元）Adjustment (yuan)",
    "调整（分）Adjustment (fen)", "应付（元）Amount due (yuan)", "应付（分）Amount due (fen)",
]  # fmt: skip
CITY_TOTAL = "全市合计 City total"
NO_DISTRICT = "（无区县）No district"


@dataclass
class ExportData:
    statement: Statement
    vendor_name: str
    lines: list[StatementLine]
    app_names: dict[str, str]
    org_names: dict[str, str]
    districts: dict[str | None, Totals]


def yuan(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


def _line_values(data: ExportData, line: StatementLine) -> list[object]:
    late = line.usage_period != data.statement.period
    return [
        line.id, data.app_names.get(line.app_id, ""), line.app_id, data.org_names.get(line.school_id, ""),
        line.school_id, data.org_names.get(line.district_id or "", ""), METER_LABELS.get(line.meter, line.meter),
        line.usage_period, "是 yes" if late else "", line.quantity, yuan(line.unit_price_fen), line.unit_price_fen,
        yuan(line.gross_fen), line.gross_fen, line.cap_fen, yuan(line.cap_reduction_fen), line.cap_reduction_fen,
        yuan(line.adjustment_fen), line.adjustment_fen, yuan(line.final_fen), line.final_fen,
    ]  # fmt: skip


def _totals_values(name: str, district_id: str, totals: Totals) -> list[object]:
    return [
        name, district_id, totals.lines, yuan(totals.gross_fen), totals.gross_fen, yuan(totals.cap_reduction_fen),
        totals.cap_reduction_fen, yuan(totals.adjustment_fen), totals.adjustment_fen, yuan(totals.total_fen),
        totals.total_fen,
    ]  # fmt: skip


def _totals_rows(data: ExportData) -> list[list[object]]:
    rows = []
    ordered = sorted(data.districts.items(), key=lambda item: (item[0] is None, data.org_names.get(item[0] or "", "")))
    city = Totals()
    for district_id, totals in ordered:
        name = data.org_names.get(district_id, district_id) if district_id else NO_DISTRICT
        rows.append(_totals_values(name, district_id or "", totals))
        city.add(gross=totals.gross_fen, cap_reduction=totals.cap_reduction_fen, adjustment=totals.adjustment_fen,
                 final=totals.total_fen, lines=totals.lines)  # fmt: skip
    rows.append(_totals_values(CITY_TOTAL, "", city))
    return rows


def _heading(data: ExportData) -> list[list[object]]:
    statement = data.statement
    return [
        ["结算单 Statement", statement.id],
        ["企业 Vendor", data.vendor_name, statement.vendor_id],
        ["结算月份 Period", statement.period],
        ["状态 State", STATE_LABELS.get(statement.state, statement.state)],
        [
            "应付合计（元）Total due (yuan)",
            yuan(statement.total_fen),
            "应付合计（分）Total due (fen)",
            statement.total_fen,
        ],
    ]


def filename(data: ExportData, extension: str) -> str:
    state = "approved" if data.statement.state == "approved" else "draft"
    return f"statement-{data.statement.period}-{data.statement.vendor_id[:8]}-{state}.{extension}"


def to_csv(data: ExportData) -> bytes:
    """The statement as CSV: heading rows, a blank row, the lines, a blank row, totals per district and city."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows(_heading(data))
    writer.writerow([])
    writer.writerow(LINE_HEADER)
    writer.writerows(_line_values(data, line) for line in data.lines)
    writer.writerow([])
    writer.writerow(TOTALS_HEADER)
    writer.writerows(_totals_rows(data))
    return buffer.getvalue().encode("utf-8-sig")


def to_xlsx(data: ExportData) -> bytes:
    """The statement as a workbook: a sheet of lines (with the heading) and a sheet of district and city totals."""
    workbook = Workbook(write_only=True)
    bold = Font(bold=True)

    def header(sheet: object, values: list[str]) -> list[WriteOnlyCell]:
        cells = []
        for value in values:
            cell = WriteOnlyCell(sheet, value=value)
            cell.font = bold
            cells.append(cell)
        return cells

    def row(sheet: object, values: list[object]) -> list[object]:
        cells: list[object] = []
        for value in values:
            if isinstance(value, Decimal):
                cell = WriteOnlyCell(sheet, value=value)
                cell.number_format = "0.00"
                cells.append(cell)
            else:
                cells.append(value)
        return cells

    lines = workbook.create_sheet("明细 Lines")
    for values in _heading(data):
        lines.append(row(lines, values))
    lines.append([])
    lines.append(header(lines, LINE_HEADER))
    for line in data.lines:
        lines.append(row(lines, _line_values(data, line)))
    totals = workbook.create_sheet("区县合计 District totals")
    totals.append(row(totals, _heading(data)[3]))
    totals.append(header(totals, TOTALS_HEADER))
    for values in _totals_rows(data):
        totals.append(row(totals, values))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
