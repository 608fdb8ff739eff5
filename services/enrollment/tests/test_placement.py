"""School placement: the properties families and the notary rely on, checked over many random districts."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from matching.games import HospitalResident

from enrollment.admission import placement
from enrollment.admission.placement import (
    Applicant,
    PlacementInputError,
    PlacementResult,
    assignment_digest,
    canonical_input,
    commitment,
    input_digest,
    lottery_numbers,
    new_seed,
    parse_input,
    place,
)

Instance = tuple[list[Applicant], dict[str, int], bytes]


def random_instance(rng: random.Random, max_applicants: int = 25, max_schools: int = 7) -> Instance:
    """A small district with few priority levels, so that many ties go to the lottery, and some ineligible choices."""
    schools = [f"S{index}" for index in range(rng.randint(1, max_schools))]
    capacities = {school: rng.randint(0, 4) for school in schools}
    applicants = []
    for index in range(rng.randint(0, max_applicants)):
        choices = rng.sample(schools, k=rng.randint(0, min(5, len(schools))))
        priorities = {
            school: (rng.randint(1, 3), rng.randint(0, 2))
            for school in schools
            if rng.random() < (0.85 if school in choices else 0.3)
        }
        applicants.append(Applicant(id=f"a{index}", choices=tuple(choices), priorities=priorities))
    return applicants, capacities, rng.randbytes(32)


def instances(count: int, **sizes: int) -> list[Instance]:
    return [random_instance(random.Random(number), **sizes) for number in range(count)]


def school_key(applicant: Applicant, school: str, lottery: Mapping[str, int]) -> tuple[tuple[int, ...], int, str]:
    """How a school orders applicants, written out from the documented rule: priority, then lottery, then id."""
    return applicant.priorities[school], lottery[applicant.id], applicant.id


def eligible_choices(applicant: Applicant) -> list[str]:
    return [school for school in applicant.choices if school in applicant.priorities]


def choice_rank(choices: Sequence[str], school: str | None) -> int:
    """Position of ``school`` in a family's true ranking; unplaced or unlisted ranks after every listed school."""
    return choices.index(school) if school in choices else len(choices)


def reference_deferred_acceptance(
    applicants: Sequence[Applicant], capacities: Mapping[str, int], seed: bytes
) -> dict[str, str | None]:
    """Round by round, as in the textbook: everyone rejected proposes to their next choice, schools keep the best."""
    lottery = lottery_numbers(seed, [applicant.id for applicant in applicants])
    by_id = {applicant.id: applicant for applicant in applicants}
    remaining = {applicant.id: eligible_choices(applicant) for applicant in applicants}
    held: dict[str, list[str]] = {school: [] for school in capacities}
    proposing = [applicant.id for applicant in applicants]
    while proposing:
        for applicant_id in proposing:
            if remaining[applicant_id]:
                held[remaining[applicant_id].pop(0)].append(applicant_id)
        proposing = []
        for school, holding in held.items():
            keys = {applicant_id: school_key(by_id[applicant_id], school, lottery) for applicant_id in holding}
            holding.sort(key=keys.__getitem__)
            proposing += holding[capacities[school] :]
            del holding[capacities[school] :]
    assignment: dict[str, str | None] = {applicant.id: None for applicant in applicants}
    for school, holding in held.items():
        for applicant_id in holding:
            assignment[applicant_id] = school
    return assignment


def library_assignment(
    applicants: Sequence[Applicant], capacities: Mapping[str, int], seed: bytes
) -> dict[str, str | None]:
    """The ``matching`` library's resident-optimal solution of the same instance."""
    lottery = lottery_numbers(seed, [applicant.id for applicant in applicants])
    # The library requires every player to rank someone and every hospital to have a seat; such players can place
    # nobody in either solver, so they are left out of its instance.
    resident_prefs = {}
    for applicant in applicants:
        wanted = [school for school in eligible_choices(applicant) if capacities[school] > 0]
        if wanted:
            resident_prefs[applicant.id] = wanted
    by_id = {applicant.id: applicant for applicant in applicants}
    hospital_prefs = {}
    for school in capacities:
        ranking = [applicant_id for applicant_id, wanted in resident_prefs.items() if school in wanted]
        if ranking:
            hospital_prefs[school] = sorted(
                ranking, key=lambda applicant_id: school_key(by_id[applicant_id], school, lottery)
            )
    game = HospitalResident.create_from_dictionaries(
        resident_prefs, hospital_prefs, {school: capacities[school] for school in hospital_prefs}
    )
    assignment: dict[str, str | None] = {applicant.id: None for applicant in applicants}
    for hospital, residents in game.solve(optimal="resident").items():
        for resident in residents:
            assignment[resident.name] = hospital.name
    return assignment


def test_capacity_respected_and_only_eligible_schools_granted() -> None:
    for applicants, capacities, seed in instances(300):
        result = place(applicants, capacities, seed)
        for school, seats in capacities.items():
            assert list(result.assignment.values()).count(school) <= seats
        for applicant in applicants:
            granted = result.assignment[applicant.id]
            assert granted is None or (granted in applicant.choices and granted in applicant.priorities)


def test_no_applicant_and_school_would_both_rather_be_matched() -> None:
    for applicants, capacities, seed in instances(300):
        result = place(applicants, capacities, seed)
        admitted: dict[str, list[Applicant]] = {school: [] for school in capacities}
        for applicant in applicants:
            if (placed_at := result.assignment[applicant.id]) is not None:
                admitted[placed_at].append(applicant)
        for applicant in applicants:
            preferred = applicant.choices[: choice_rank(applicant.choices, result.assignment[applicant.id])]
            for school in preferred:
                if school not in applicant.priorities:
                    continue
                assert len(admitted[school]) == capacities[school], (applicant.id, school, "has a free seat")
                mine = school_key(applicant, school, result.lottery)
                assert all(school_key(other, school, result.lottery) < mine for other in admitted[school])


def test_same_assignment_as_a_plain_round_by_round_deferred_acceptance() -> None:
    for applicants, capacities, seed in instances(300, max_applicants=40):
        assert place(applicants, capacities, seed).assignment == reference_deferred_acceptance(
            applicants, capacities, seed
        )


def test_same_assignment_as_the_matching_library_resident_optimal_solution() -> None:
    for applicants, capacities, seed in instances(120):
        assert place(applicants, capacities, seed).assignment == library_assignment(applicants, capacities, seed)


def test_the_order_of_applicants_in_the_input_does_not_matter() -> None:
    for number, (applicants, capacities, seed) in enumerate(instances(100)):
        shuffled = applicants[:]
        random.Random(number).shuffle(shuffled)
        expected = place(applicants, capacities, seed)
        again = place(shuffled, capacities, seed)
        assert again.assignment == expected.assignment
        assert again.waitlists == expected.waitlists


def test_no_family_gets_a_school_it_prefers_by_misreporting_its_ranking() -> None:
    worse_off_by_lying = 0
    for number, (applicants, capacities, seed) in enumerate(instances(400)):
        if not applicants:
            continue
        rng = random.Random(10_000 + number)
        liar = rng.randrange(len(applicants))
        truthful = applicants[liar]
        honest_result = place(applicants, capacities, seed).assignment[truthful.id]
        for _ in range(5):
            schools = list(capacities)
            misreport = tuple(rng.sample(schools, k=rng.randint(0, min(5, len(schools)))))
            lying = Applicant(id=truthful.id, choices=misreport, priorities=truthful.priorities)
            outcome = place([*applicants[:liar], lying, *applicants[liar + 1 :]], capacities, seed)
            honest_rank = choice_rank(truthful.choices, honest_result)
            lied_rank = choice_rank(truthful.choices, outcome.assignment[truthful.id])
            assert lied_rank >= honest_rank
            worse_off_by_lying += lied_rank > honest_rank
    assert worse_off_by_lying > 0  # the misreports do change outcomes: the check above is not vacuous


def test_a_declined_place_leaves_every_other_applicant_at_least_as_well_off() -> None:
    moved_up = 0
    for number, (applicants, capacities, seed) in enumerate(instances(300)):
        before = place(applicants, capacities, seed)
        placed = [applicant for applicant in applicants if before.assignment[applicant.id] is not None]
        if not placed:
            continue
        declined = random.Random(number).choice(placed)
        after = place([applicant for applicant in applicants if applicant is not declined], capacities, seed)
        assert declined.id not in after.assignment
        for applicant in applicants:
            if applicant is declined:
                continue
            old = choice_rank(applicant.choices, before.assignment[applicant.id])
            new = choice_rank(applicant.choices, after.assignment[applicant.id])
            assert new <= old, (number, applicant.id)
            moved_up += new < old
        # The head of the declined school's waitlist now has that school, or one they like better that the freed seat
        # opened up further along a chain of moves: never less.
        school = before.assignment[declined.id]
        assert school is not None
        if waiting := before.waitlists[school]:
            head = next(applicant for applicant in applicants if applicant.id == waiting[0])
            assert choice_rank(head.choices, after.assignment[head.id]) <= choice_rank(head.choices, school)
    assert moved_up > 0


def test_waitlists_hold_eligible_applicants_who_wanted_the_school_more_in_school_order() -> None:
    for applicants, capacities, seed in instances(300):
        result = place(applicants, capacities, seed)
        by_id = {applicant.id: applicant for applicant in applicants}
        for school, waiting in result.waitlists.items():
            expected = [
                applicant.id
                for applicant in applicants
                if school in applicant.priorities
                and school in applicant.choices[: choice_rank(applicant.choices, result.assignment[applicant.id])]
            ]
            keys = {applicant_id: school_key(by_id[applicant_id], school, result.lottery) for applicant_id in expected}
            expected.sort(key=keys.__getitem__)
            assert waiting == expected


def test_priority_category_comes_before_the_lottery_and_the_lottery_breaks_ties() -> None:
    seed = bytes(range(32))
    lottery = lottery_numbers(seed, ["b1", "b2"])
    winner, loser = sorted(["b1", "b2"], key=lottery.__getitem__)
    applicants = [
        Applicant(id="far", choices=("A", "B"), priorities={"A": (2, 0), "B": (2, 0)}),
        Applicant(id="near", choices=("A",), priorities={"A": (1, 0)}),
        Applicant(id="b1", choices=("B", "A"), priorities={"B": (1, 0), "A": (2, 0)}),
        Applicant(id="b2", choices=("B", "A"), priorities={"B": (1, 0), "A": (2, 0)}),
    ]
    result = place(applicants, {"A": 1, "B": 1}, seed)
    assert result.assignment == {"near": "A", "far": None, winner: "B", loser: None}
    # At A the two category-2 applicants wait in lottery order; at B the category-1 loser waits before "far".
    assert result.waitlists == {"A": sorted(["far", loser], key=result.lottery.__getitem__), "B": [loser, "far"]}


def test_deferred_acceptance_does_not_punish_a_first_choice_that_failed() -> None:
    # Under the old "Boston" rule, child x would lose B to y, who put B first; here x's priority at B still counts.
    applicants = [
        Applicant(id="x", choices=("A", "B"), priorities={"A": (2,), "B": (1,)}),
        Applicant(id="y", choices=("B",), priorities={"B": (2,)}),
        Applicant(id="z", choices=("A",), priorities={"A": (1,)}),
    ]
    result = place(applicants, {"A": 1, "B": 1}, new_seed())
    assert result.assignment == {"x": "B", "y": None, "z": "A"}
    assert result.waitlists == {"A": ["x"], "B": ["y"]}


def test_lottery_numbers_follow_the_published_derivation_and_depend_only_on_seed_and_id() -> None:
    seed = new_seed()
    numbers = lottery_numbers(seed, ["a", "b", "学生-3"])
    for applicant_id, number in numbers.items():
        digest = hmac.new(seed, applicant_id.encode("utf-8"), hashlib.sha256).digest()
        assert number == int.from_bytes(digest[:8], "big")
    assert lottery_numbers(seed, ["b"]) == {"b": numbers["b"]}


def test_same_seed_gives_the_same_draw_and_another_seed_another_lottery() -> None:
    applicants, capacities, _ = random_instance(random.Random(7), max_applicants=60)
    seed = new_seed()
    first = place(applicants, capacities, seed)
    again = place(applicants, capacities, bytes(seed))
    assert (again.assignment, again.waitlists, again.lottery) == (first.assignment, first.waitlists, first.lottery)
    assert assignment_digest(again) == assignment_digest(first)
    other = place(applicants, capacities, new_seed())
    assert other.lottery.keys() == first.lottery.keys()
    assert all(other.lottery[key] != first.lottery[key] for key in first.lottery)


def test_the_published_commitment_matches_only_the_revealed_seed() -> None:
    seed = new_seed()
    published = commitment(seed)
    assert len(seed) == 32
    assert hashlib.sha256(bytes.fromhex(seed.hex())).hexdigest() == published
    assert commitment(new_seed()) != published


def test_the_input_digest_changes_with_any_change_of_input_but_not_with_applicant_order() -> None:
    applicants, capacities, _ = random_instance(random.Random(3), max_applicants=30)
    digest = input_digest(applicants, capacities)
    assert input_digest(list(reversed(applicants)), capacities) == digest
    assert input_digest(applicants, {**capacities, "S0": capacities["S0"] + 1}) != digest
    first = next(applicant for applicant in applicants if applicant.priorities)
    school, values = next(iter(first.priorities.items()))
    changed = Applicant(id=first.id, choices=first.choices, priorities={**first.priorities, school: (values[0] + 1,)})
    assert (
        input_digest([changed if applicant is first else applicant for applicant in applicants], capacities) != digest
    )


def test_the_canonical_input_reads_back_as_the_same_instance() -> None:
    for applicants, capacities, seed in instances(50):
        document = json.loads(canonical_input(applicants, capacities))
        read_applicants, read_capacities = parse_input(document)
        assert read_capacities == capacities
        assert sorted(read_applicants, key=lambda applicant: applicant.id) == sorted(
            applicants, key=lambda applicant: applicant.id
        )
        assert (
            place(read_applicants, read_capacities, seed).assignment == place(applicants, capacities, seed).assignment
        )


@pytest.mark.parametrize(
    ("applicants", "capacities", "message"),
    [
        ([], {"A": -1}, "non-negative"),
        ([], {"A": 1.5}, "non-negative"),
        ([], {"A": True}, "non-negative"),
        ([Applicant(id="a", choices=("B",), priorities={})], {"A": 1}, "without a capacity: B"),
        ([Applicant(id="a", choices=(), priorities={"B": (1,)})], {"A": 1}, "without a capacity: B"),
        (
            [Applicant(id="a", choices=("A",), priorities={}), Applicant(id="a", choices=(), priorities={})],
            {"A": 1},
            "duplicate applicant id: a",
        ),
    ],
)
def test_bad_district_input_is_refused_with_a_clear_message(
    applicants: list[Applicant], capacities: dict[str, int], message: str
) -> None:
    with pytest.raises(PlacementInputError, match=message):
        place(applicants, capacities, new_seed())


@pytest.mark.parametrize(
    ("choices", "priorities", "message"),
    [
        (("A", "B", "A"), {}, "more than once: A"),
        (("A",), {"A": ()}, "non-empty sequence of integers"),
        (("A",), {"A": (1, "2")}, "non-empty sequence of integers"),
        (("A",), {"A": (True,)}, "non-empty sequence of integers"),
    ],
)
def test_a_malformed_application_cannot_be_constructed(
    choices: tuple[str, ...], priorities: dict[str, tuple[int, ...]], message: str
) -> None:
    with pytest.raises(PlacementInputError, match=message):
        Applicant(id="a", choices=choices, priorities=priorities)


def test_a_short_seed_is_refused_because_its_commitment_could_be_brute_forced() -> None:
    with pytest.raises(PlacementInputError, match="at least 16 bytes"):
        place([], {"A": 1}, b"12345")


def test_malformed_published_documents_are_refused() -> None:
    with pytest.raises(PlacementInputError, match="JSON object"):
        parse_input([])
    with pytest.raises(PlacementInputError, match="applicants list"):
        parse_input({"applicants": {}, "capacities": {}})
    with pytest.raises(PlacementInputError, match="priorities object"):
        parse_input({"applicants": [{"id": "a", "choices": ["A"], "priorities": {"A": 1}}], "capacities": {"A": 1}})
    with pytest.raises(PlacementInputError, match="needs an id"):
        parse_input({"applicants": [{"id": 5, "choices": [], "priorities": {}}], "capacities": {}})


def run_verify(*arguments: str) -> subprocess.CompletedProcess[str]:
    # The package may not be installed into the interpreter yet: point the child at the source tree the test imports.
    source_root = Path(placement.__file__).resolve().parents[2]
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(source_root), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", "enrollment.admission.placement", "verify", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_anyone_can_re_run_a_published_draw_from_the_input_file_and_the_revealed_seed(tmp_path: Path) -> None:
    applicants, capacities, _ = random_instance(random.Random(11), max_applicants=40)
    seed = new_seed()
    published_input = tmp_path / "input.json"
    published_input.write_bytes(canonical_input(applicants, capacities))
    result: PlacementResult = place(applicants, capacities, seed)

    completed = run_verify(str(published_input), seed.hex())

    assert completed.returncode == 0, completed.stderr
    printed = dict(line.split(": ", 1) for line in completed.stdout.splitlines())
    assert printed["assignment digest"] == assignment_digest(result)
    assert printed["input digest"] == input_digest(applicants, capacities)
    assert printed["seed commitment"] == commitment(seed)

    other_seed = next(
        candidate
        for candidate in (hashlib.sha256(bytes([number])).digest() for number in range(256))
        if place(applicants, capacities, candidate).assignment != result.assignment
    )
    other_draw = run_verify(str(published_input), other_seed.hex())
    printed_for_other_seed = dict(line.split(": ", 1) for line in other_draw.stdout.splitlines())
    assert printed_for_other_seed["assignment digest"] != printed["assignment digest"]


def test_the_verify_command_explains_a_bad_seed_or_input(tmp_path: Path) -> None:
    broken = tmp_path / "input.json"
    broken.write_text('{"applicants": [], "capacities": {"A": -2}}')
    completed = run_verify(str(broken), new_seed().hex())
    assert completed.returncode == 2
    assert "non-negative" in completed.stderr
    assert run_verify(str(broken), "not hex").returncode == 2
