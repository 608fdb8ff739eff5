"""Every table of the enrollment service, for migrations."""

from enrollment.academics.models import (
    AcademicSession,
    ClassMembership,
    ClassTeacher,
    Course,
    SchoolClass,
    StudentEnrollment,
)
from enrollment.admission.models import (
    AdmissionSeason,
    Application,
    ApplicationRevision,
    AttendanceZone,
    PlacementRound,
    SeasonSchool,
    SupportingDocument,
    Verification,
)
from enrollment.changes.models import ChangeRecord
from enrollment.directory.models import DirectoryGuardianLink, DirectoryOrganisation, DirectoryPerson, DirectoryRole
from kit.audit import AuditEntry
from kit.db import service_metadata
from kit.inbox import ProcessedEvent
from kit.outbox import OutboxEvent

metadata = service_metadata(
    DirectoryOrganisation, DirectoryPerson, DirectoryRole, DirectoryGuardianLink,
    AcademicSession, Course, SchoolClass, ClassTeacher, StudentEnrollment, ClassMembership, ChangeRecord,
    AdmissionSeason, SeasonSchool, AttendanceZone, Application, ApplicationRevision, Verification,
    SupportingDocument, PlacementRound, AuditEntry, OutboxEvent, ProcessedEvent,
)  # fmt: skip
