"""Admission's typed failures; each says what to fix, in Chinese and English."""

from __future__ import annotations

from kit.errors import Conflict, Forbidden, InvalidInput, NotFound


class SeasonNotFound(NotFound):
    slug = "enrollment/season-not-found"
    title_zh = "招生季不存在"
    title_en = "Admission season not found"


class ApplicationNotFound(NotFound):
    slug = "enrollment/application-not-found"
    title_zh = "入学申请不存在"
    title_en = "Application not found"


class DocumentNotFound(NotFound):
    slug = "enrollment/document-not-found"
    title_zh = "证明材料不存在"
    title_en = "Document not found"


class InvalidSeason(InvalidInput):
    slug = "enrollment/invalid-season"
    title_zh = "招生季设置有误"
    title_en = "Invalid admission season"


class ApplicationClosed(Conflict):
    slug = "enrollment/application-closed"
    title_zh = "不在报名时间内"
    title_en = "Applications are not being accepted"


class DuplicateApplication(Conflict):
    slug = "enrollment/duplicate-application"
    title_zh = "该儿童已提交过申请"
    title_en = "This child already has an application"


class InvalidApplication(InvalidInput):
    slug = "enrollment/invalid-application"
    title_zh = "入学申请填写有误"
    title_en = "Invalid application"


class NotTheGuardian(Forbidden):
    slug = "enrollment/not-the-guardian"
    title_zh = "您不是该儿童的监护人"
    title_en = "Not the child's guardian"


class DrawStateConflict(Conflict):
    slug = "enrollment/draw-state"
    title_zh = "当前招生阶段不允许此操作"
    title_en = "Not possible at this stage of the admission"
