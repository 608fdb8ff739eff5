"""Balanced class assignment (均衡分班): the split is fair by size, sex and score, deterministic, and the API plans
before it writes."""

from __future__ import annotations

import itertools
import json
import random
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from contracts.events.enrollment import ClassMembershipChangedV1
from enrollment.academics.balancing import BalancedPlan, Pupil, balance
from enrollment.academics.models import ClassMembership, StudentEnrollment
from enrollment.academics.service import school_today
from enrollment.changes.models import ChangeRecord
from enrollment.testing import City
from kit.outbox import OutboxEvent

# ------------------------------------------------------------------------------------ the algorithm


def random_pupils(rng: random.Random, count: int, *, scored: float = 1.0) -> list[Pupil]:
    return [
        Pupil(
            id=f"p{index:03d}",
            sex=rng.choice(["male", "female", "male", "female", None]),
            score=round(rng.gauss(75, 12), 1) if rng.random() < scored else None,
        )
        for index in range(count)
    ]


def classes_of(plan: BalancedPlan) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for pupil_id, class_id in plan.assignment.items():
        groups.setdefault(class_id, []).append(pupil_id)
    return groups


def spread_of(groups: list[list[Pupil]]) -> float:
    means = [sum(p.score or 0 for p in group) / len(group) for group in groups if group]
    return max(means) - min(means)


@pytest.mark.parametrize("seed", range(40))
def test_sizes_boys_and_girls_differ_by_at_most_one(seed: int) -> None:
    rng = random.Random(seed)
    pupils = random_pupils(rng, rng.randint(1, 130), scored=rng.choice([0.0, 0.6, 1.0]))
    class_ids = [f"c{index}" for index in range(rng.randint(1, 7))]
    plan = balance(pupils, class_ids, random_trials=20)

    assert sorted(plan.assignment) == sorted(pupil.id for pupil in pupils)
    assert set(plan.assignment.values()) <= set(class_ids)
    sex = {pupil.id: pupil.sex for pupil in pupils}
    for wanted in ("male", "female", None):
        counts = [sum(1 for pid in report.pupil_ids if sex[pid] == wanted) for report in plan.classes]
        assert max(counts) - min(counts) <= 1, (wanted, counts)
    sizes = [report.size for report in plan.classes]
    assert max(sizes) - min(sizes) <= 1 and plan.size_spread == max(sizes) - min(sizes)


def test_the_serpentine_deals_ranks_back_and_forth() -> None:
    pupils = [Pupil(id=f"p{score}", sex="male", score=score) for score in range(1, 9)]
    plan = balance(pupils, ["A", "B"], max_swaps=0)
    # Ranks 8,7 | 6,5 | 4,3 | 2,1 go A B | B A | A B | B A.
    assert sorted(classes_of(plan)["A"]) == ["p1", "p4", "p5", "p8"]
    assert sorted(classes_of(plan)["B"]) == ["p2", "p3", "p6", "p7"]
    assert plan.mean_spread == 0


def test_the_improvement_pass_reaches_the_best_split_the_snake_missed() -> None:
    pupils = [Pupil(id=f"p{score}", sex="female", score=score) for score in (10, 9, 8, 7, 6, 0)]
    snake = balance(pupils, ["A", "B"], max_swaps=0)
    improved = balance(pupils, ["A", "B"])
    assert snake.mean_spread == pytest.approx(2.0)
    best = min(
        spread_of([[p for p in pupils if p.id in chosen], [p for p in pupils if p.id not in chosen]])
        for chosen in itertools.combinations([p.id for p in pupils], 3)
    )
    assert best == pytest.approx(2 / 3)
    assert improved.mean_spread == pytest.approx(best)
    assert improved.swaps >= 1


@pytest.mark.parametrize("seed", range(15))
def test_no_single_same_sex_swap_narrows_the_spread_any_further(seed: int) -> None:
    rng = random.Random(1000 + seed)
    pupils = random_pupils(rng, rng.randint(6, 40))
    plan = balance(pupils, [f"c{index}" for index in range(rng.randint(2, 5))], random_trials=0)
    by_id = {pupil.id: pupil for pupil in pupils}
    groups = [[by_id[pid] for pid in report.pupil_ids] for report in plan.classes]
    spread = spread_of(groups)
    assert plan.mean_spread == pytest.approx(spread)
    for first, second in itertools.combinations(range(len(groups)), 2):
        for a, b in itertools.product(groups[first], groups[second]):
            if a.sex != b.sex:
                continue
            swapped = [list(group) for group in groups]
            swapped[first][swapped[first].index(a)] = b
            swapped[second][swapped[second].index(b)] = a
            assert spread_of(swapped) >= spread - 1e-9


def test_the_plan_is_far_more_balanced_than_random_classes() -> None:
    pupils = random_pupils(random.Random(7), 180)
    plan = balance(pupils, ["c1", "c2", "c3", "c4"])
    snake_only = balance(pupils, ["c1", "c2", "c3", "c4"], max_swaps=0, random_trials=0)
    assert plan.mean_spread is not None and snake_only.mean_spread is not None
    assert plan.mean_spread <= snake_only.mean_spread
    baseline = plan.random_baseline
    assert baseline.trials == 200
    assert baseline.expected_mean_spread is not None and baseline.expected_mean_spread > 2
    assert plan.mean_spread < baseline.expected_mean_spread / 50
    assert baseline.share_at_least_as_balanced == 0
    assert baseline.expected_boys_share_spread is not None and plan.boys_share_spread is not None
    assert plan.boys_share_spread < baseline.expected_boys_share_spread
    for report in plan.classes:
        scores = [pupil.score for pupil in pupils if pupil.id in report.pupil_ids and pupil.score is not None]
        assert report.mean_score == pytest.approx(sum(scores) / len(scores))
        assert report.std_score is not None and 5 < report.std_score < 20


def test_the_same_input_gives_the_same_plan_whatever_its_order() -> None:
    pupils = random_pupils(random.Random(3), 90, scored=0.7)
    shuffled = list(pupils)
    random.Random(4).shuffle(shuffled)
    first, second = balance(pupils, ["x", "y", "z"]), balance(shuffled, ["x", "y", "z"])
    assert first == second


def test_without_scores_only_sizes_and_sexes_are_balanced() -> None:
    pupils = random_pupils(random.Random(5), 50, scored=0.0)
    plan = balance(pupils, ["a", "b", "c"])
    assert plan.mean_spread is None and plan.swaps == 0
    assert all(report.mean_score is None and report.scored == 0 for report in plan.classes)
    assert plan.random_baseline.expected_mean_spread is None
    assert plan.random_baseline.expected_boys_share_spread is not None


def test_bad_algorithm_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one class"):
        balance([Pupil(id="a", sex="male", score=1)], [])
    with pytest.raises(ValueError, match="unique"):
        balance([Pupil(id="a", sex="male"), Pupil(id="a", sex="female")], ["c"])
    with pytest.raises(ValueError, match="finite"):
        balance([Pupil(id="a", sex="male", score=float("nan"))], ["c"])


# ------------------------------------------------------------------------------------------ the API


async def grade_one(client: httpx.AsyncClient, city: City, classes: int) -> tuple[str, list[str]]:
    today = school_today()  # read when used: a suite may run across midnight in China
    year = await client.post(
        "/academic-sessions",
        json={"org_id": city.city_id, "kind": "school_year", "title": "本学年",
              "start_date": str(today - timedelta(days=30)), "end_date": str(today + timedelta(days=300))},
        headers=city.token("city_admin"),
    )  # fmt: skip
    assert year.status_code == 201, year.text
    class_ids = []
    for number in range(1, classes + 1):
        response = await client.post(
            f"/schools/{city.school_a1}/classes",
            json={"school_year_id": year.json()["id"], "grade": "01", "number": number},
            headers=city.token("a1_admin"),
        )
        assert response.status_code == 201, response.text
        class_ids.append(response.json()["id"])
    return year.json()["id"], class_ids


def enrol_pupils(city: City, count: int, *, grade: str = "01", prefix: str = "p") -> list[str]:
    ids = []
    for index in range(count):
        person = city.add_person(
            f"{prefix}{index}", kind="student", name=f"学生{prefix}{index}", org_id=city.school_a1,
            sex="male" if index % 3 else "female",
        )  # fmt: skip
        ids.append(person.id)
    with city.database.session() as session:
        enrolled = {
            row.student_id: row
            for row in session.exec(select(StudentEnrollment).where(col(StudentEnrollment.student_id).in_(ids))).all()
        }
        for student_id in ids:
            enrolment = enrolled.get(student_id) or StudentEnrollment(
                student_id=student_id, school_id=city.school_a1, source="directory",
                start_date=school_today() - timedelta(days=30),
            )  # fmt: skip
            enrolment.grade = grade
            session.add(enrolment)
    return ids


def written(city: City) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]], int]:
    """(student, class, reason) of every membership, the membership events, and the enrolment changes."""
    with city.database.read_session() as session:
        memberships = [
            (row.student_id, row.class_id, row.reason) for row in session.exec(select(ClassMembership)).all()
        ]
        events = [
            json.loads(row.envelope)["data"]
            for row in session.exec(
                select(OutboxEvent).where(OutboxEvent.event_type == ClassMembershipChangedV1.event_type())
            ).all()
        ]
        enrollment_changes = len(session.exec(select(ChangeRecord).where(ChangeRecord.entity == "enrollments")).all())
    return memberships, events, enrollment_changes


async def test_a_plan_is_shown_first_and_written_on_commit(client: httpx.AsyncClient, city: City) -> None:
    year_id, class_ids = await grade_one(client, city, 3)
    pupils = enrol_pupils(city, 20)
    scores = {student_id: 60 + (index * 7) % 40 for index, student_id in enumerate(pupils)}
    body = {"school_year_id": year_id, "grade": "01", "class_ids": class_ids, "scores": scores}
    url = f"/schools/{city.school_a1}/class-assignments"

    plan = await client.post(url, json=body, headers=city.token("a1_admin"))
    assert plan.status_code == 200, plan.text
    result = plan.json()
    assert result["committed"] is False
    assert sorted(item["size"] for item in result["classes"]) == [6, 7, 7]
    boys = [item["boys"] for item in result["classes"]]
    assert max(boys) - min(boys) <= 1 and sum(boys) == sum(1 for index in range(20) if index % 3)
    assert [item["class_name"] for item in result["classes"]] == ["一年级(1)班", "一年级(2)班", "一年级(3)班"]
    assert {pupil["student_id"] for item in result["classes"] for pupil in item["pupils"]} == set(pupils)
    summary, comparison = result["summary"], result["random_comparison"]
    assert summary["pupils"] == 20 and summary["size_spread"] == 1
    assert summary["mean_spread"] < comparison["expected_mean_spread"]
    assert comparison["trials"] == 200
    assert written(city) == ([], [], 0)

    committed = await client.post(url, json={**body, "commit": True}, headers=city.token("a1_admin"))
    assert committed.status_code == 200, committed.text
    assert committed.json()["committed"] is True
    assert committed.json()["classes"] == result["classes"]  # the same input gives the same plan
    memberships, events, enrollment_changes = written(city)
    planned = {pupil["student_id"]: item["class_id"] for item in result["classes"] for pupil in item["pupils"]}
    assert sorted(memberships) == sorted(
        (student_id, class_id, "balanced_assignment") for student_id, class_id in planned.items()
    )
    assert {(event["student_id"], event["to_class_id"], event["reason"]) for event in events} == {
        (student_id, class_id, "balanced_assignment") for student_id, class_id in planned.items()
    }
    assert enrollment_changes == 20
    unassigned = await client.get(
        f"/schools/{city.school_a1}/students", params={"unassigned": "true"}, headers=city.token("a1_admin")
    )
    assert unassigned.json()["total"] == 0

    again = await client.post(url, json={**body, "commit": True}, headers=city.token("a1_admin"))
    assert again.status_code == 409 and again.json()["type"].endswith("enrollment/class-not-empty")


async def test_by_default_the_grades_unplaced_pupils_are_assigned(client: httpx.AsyncClient, city: City) -> None:
    year_id, class_ids = await grade_one(client, city, 3)
    pupils = enrol_pupils(city, 7)
    enrol_pupils(city, 2, grade="02", prefix="older")
    placed_elsewhere = await client.post(
        f"/schools/{city.school_a1}/classes",
        json={"school_year_id": year_id, "grade": "01", "number": 9},
        headers=city.token("a1_admin"),
    )
    await client.post(
        f"/schools/{city.school_a1}/classes/{placed_elsewhere.json()['id']}/members",
        json={"student_ids": [pupils[0]]},
        headers=city.token("a1_admin"),
    )
    response = await client.post(
        f"/schools/{city.school_a1}/class-assignments",
        json={"school_year_id": year_id, "grade": "01", "class_ids": class_ids},
        headers=city.token("a1_admin"),
    )
    assert response.status_code == 200, response.text
    placed = {pupil["student_id"] for item in response.json()["classes"] for pupil in item["pupils"]}
    assert placed == set(pupils[1:])
    assert response.json()["summary"]["mean_spread"] is None  # no scores: only sizes and sexes


async def test_assignment_requests_are_checked(client: httpx.AsyncClient, city: City) -> None:
    year_id, class_ids = await grade_one(client, city, 2)
    pupils = enrol_pupils(city, 4)
    second_grade = await client.post(
        f"/schools/{city.school_a1}/classes",
        json={"school_year_id": year_id, "grade": "02", "number": 1},
        headers=city.token("a1_admin"),
    )
    url = f"/schools/{city.school_a1}/class-assignments"
    admin = city.token("a1_admin")
    body = {"school_year_id": year_id, "grade": "01", "class_ids": class_ids}

    wrong_grade = await client.post(url, json={**body, "class_ids": [*class_ids, second_grade.json()["id"]]},
                                    headers=admin)  # fmt: skip
    assert wrong_grade.status_code == 422
    assert wrong_grade.json()["errors"] == [
        {"field": "class_ids.2", "message": "不属于该学年该年级；not a class of this school year and grade",
         "code": "wrong_year_or_grade"}
    ]  # fmt: skip
    unknown = await client.post(url, json={**body, "class_ids": ["nope"]}, headers=admin)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["code"] == "not_found"
    repeated = await client.post(url, json={**body, "class_ids": [class_ids[0], class_ids[0]]}, headers=admin)
    assert repeated.status_code == 422
    stranger_score = await client.post(url, json={**body, "scores": {"someone-else": 90}}, headers=admin)
    assert stranger_score.status_code == 422 and problem_codes(stranger_score) == ["unknown"]
    too_few = await client.post(url, json={**body, "student_ids": pupils[:1]}, headers=admin)
    assert too_few.status_code == 422 and problem_codes(too_few) == ["too_few_pupils"]
    not_enrolled = await client.post(url, json={**body, "student_ids": [*pupils, "ghost"]}, headers=admin)
    assert not_enrolled.status_code == 422 and problem_codes(not_enrolled) == ["not_enrolled"]

    assert (await client.post(url, json=body)).status_code == 401
    assert (await client.post(url, json=body, headers=city.token("b1_admin"))).status_code == 403
    assert (await client.post(url, json=body, headers=city.token("a1_teacher"))).status_code == 403
    app = city.app_token(scopes="roster.read roster.students.read", schools=[city.school_a1])
    assert (await client.post(url, json=body, headers=app)).status_code == 403
    assert written(city) == ([], [], 0)


def problem_codes(response: httpx.Response) -> list[str]:
    return [error["code"] for error in response.json().get("errors", [])]
