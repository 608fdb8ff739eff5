"""Failures of statements, disputes, approval and period closing, each mapped to problem+json once by kit."""

from __future__ import annotations

from kit.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound


class PeriodNotEnded(Conflict):
    """A period can close only once its month is over."""

    slug = "metering/period-not-ended"
    title_zh = "结算期尚未结束"
    title_en = "The period has not ended"

    def __init__(self, period: str) -> None:
        super().__init__(
            f"{period} 月尚未结束，不能结账；The month {period} has not ended yet, so it cannot be closed.",
            period=period,
        )


class PeriodAlreadyClosed(Conflict):
    """A closed period stays closed; its statements were issued once."""

    slug = "metering/period-closed"
    title_zh = "结算期已结账"
    title_en = "The period is closed"

    def __init__(self, period: str) -> None:
        super().__init__(
            f"{period} 已结账，结算单已出具，请查看结算单；The period {period} is closed and its statements were "
            "issued: read the statements instead.",
            period=period,
        )


class StatementNotFound(NotFound):
    slug = "metering/statement-not-found"
    title_zh = "结算单不存在"
    title_en = "Statement not found"

    def __init__(self, statement_id: str) -> None:
        super().__init__(
            f"没有编号为 {statement_id} 的结算单，或您无权查看；No statement {statement_id}, or you may not read it.",
        )


class VendorNotFound(NotFound):
    slug = "metering/vendor-not-found"
    title_zh = "企业不存在"
    title_en = "Vendor not found"

    def __init__(self, vendor_id: str) -> None:
        super().__init__(f"没有编号为 {vendor_id} 的企业，或您无权查看；No vendor {vendor_id}, or you may not read it.")


class DisputeNotFound(NotFound):
    slug = "metering/dispute-not-found"
    title_zh = "异议不存在"
    title_en = "Dispute not found"

    def __init__(self, dispute_id: str) -> None:
        super().__init__(f"此结算单没有编号为 {dispute_id} 的异议；The statement has no dispute {dispute_id}.")


class LineNotFound(NotFound):
    slug = "metering/line-not-found"
    title_zh = "结算明细不存在"
    title_en = "Statement line not found"

    def __init__(self, line_id: int) -> None:
        super().__init__(f"此结算单没有编号为 {line_id} 的明细；The statement has no line {line_id}.")


class StatementApproved(Conflict):
    """An approved statement is final: no dispute, adjustment or second approval."""

    slug = "metering/statement-approved"
    title_zh = "已审核的结算单不可更改"
    title_en = "An approved statement cannot change"

    def __init__(self) -> None:
        super().__init__("已审核的结算单不可更改；An approved statement is final and cannot change.")


class OpenDisputes(Conflict):
    slug = "metering/open-disputes"
    title_zh = "结算单仍有未处理的异议"
    title_en = "The statement has open disputes"

    def __init__(self, count: int) -> None:
        super().__init__(
            f"结算单还有 {count} 条未处理的异议，请先处理；Resolve the statement's {count} open dispute(s) first.",
            open_disputes=count,
        )


class DisputeAlreadyOpen(Conflict):
    slug = "metering/dispute-already-open"
    title_zh = "该明细已有未处理的异议"
    title_en = "The line already has an open dispute"

    def __init__(self, dispute_id: str) -> None:
        super().__init__(
            f"该明细已有未处理的异议 {dispute_id}；The line already has an open dispute ({dispute_id}).",
            dispute_id=dispute_id,
        )


class DisputeResolved(Conflict):
    slug = "metering/dispute-resolved"
    title_zh = "异议已处理"
    title_en = "The dispute is already resolved"

    def __init__(self, dispute_id: str) -> None:
        super().__init__(f"异议 {dispute_id} 已处理；The dispute {dispute_id} is already resolved.")


class NotStatementReader(Forbidden):
    slug = "metering/statements-forbidden"
    title_zh = "无权查看结算单"
    title_en = "You may not read statements"

    def __init__(self) -> None:
        super().__init__(
            "结算单只对市级管理员和应用企业的开发者开放；Statements are for city administrators and the vendor's "
            "developers only.",
        )


class NotVendorDeveloper(Forbidden):
    slug = "metering/not-vendor-developer"
    title_zh = "只有该企业的开发者可以提出异议"
    title_en = "Only the vendor's developers may dispute"

    def __init__(self) -> None:
        super().__init__(
            "只有该企业的开发者可以对结算明细提出异议；Only the vendor's developers may dispute its lines."
        )


def invalid(field: str, message: str, code: str) -> InvalidInput:
    """A 422 problem naming one offending field."""
    return InvalidInput(message, errors=[FieldError(field=field, message=message, code=code)])
