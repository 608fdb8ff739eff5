"""School placement: student-proposing deferred acceptance with one auditable lottery number per applicant.

Each applicant (a child's application) ranks schools; each school ranks the applicants who are eligible there by
(priority category, tie-break values..., lottery number, application id), lower first. ``place`` runs the
student-proposing deferred acceptance of Gale and Shapley with a single lottery (Abdulkadiroğlu, Pathak and Roth
2009): the result is stable, the best stable result for every applicant, and no family gains by misreporting its
ranking. The result does not depend on the order of the applicants in the input.

How a draw is made auditable:

1. Before the draw, publish the input file (format below), its ``input_digest`` and ``commitment(seed)`` of a fresh
   ``new_seed()``. The input and the seed are then both fixed.
2. Run ``place(applicants, capacities, seed)`` and publish the result with ``assignment_digest(result)``.
3. Reveal the seed (hex). Anyone can check that ``sha256(seed)`` equals the commitment and re-run the draw:
   ``python -m enrollment.admission.placement verify input.json SEED_HEX`` prints the digests to compare.

Published input file format (UTF-8 JSON; ``canonical_input`` writes exactly this with sorted keys, no spaces and the
applicants sorted by id, and ``input_digest`` is the SHA-256 of those bytes)::

    {
      "applicants": [
        {"id": "A-7f3c", "choices": ["S01", "S07"], "priorities": {"S01": [1, 20190301], "S07": [4, 0]}}
      ],
      "capacities": {"S01": 120, "S07": 80}
    }

- ``id``: application id (random, not personal data), unique.
- ``choices``: school ids, most preferred first, no repeats, each one a key of ``capacities``.
- ``priorities``: per school, a non-empty list of integers compared left to right, lower is stronger: the priority
  category first, then the district's tie-break values (for example a registration date as YYYYMMDD). An applicant
  can only be admitted to a school that is both in their choices and in their priorities; a choice without a
  priority entry is kept (the family asked for it) but can never be granted.
- ``capacities``: seats per school, a non-negative integer.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from heapq import heappush, heapreplace
from operator import itemgetter
from pathlib import Path

MINIMUM_SEED_BYTES = 16
LOTTERY_NUMBER_BYTES = 8


class PlacementInputError(ValueError):
    """The placement input is malformed: the message names the offending applicant or school."""


@dataclass(frozen=True, slots=True)
class Applicant:
    """One application: the schools it ranks and its priority at each school where it is eligible."""

    id: str
    choices: tuple[str, ...]
    priorities: Mapping[str, tuple[int, ...]]

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise PlacementInputError(f"申请编号必须是非空字符串：{self.id!r}；applicant id must be a non-empty string")
        choices = tuple(self.choices)
        for school in choices:
            if not isinstance(school, str):
                raise PlacementInputError(
                    f"申请 {self.id} 的志愿学校编号必须是字符串：{school!r}；"
                    f"applicant {self.id}: school ids in choices must be strings"
                )
        if len(set(choices)) != len(choices):
            repeated = sorted({school for school in choices if choices.count(school) > 1})
            raise PlacementInputError(
                f"申请 {self.id} 的志愿重复填报了学校：{', '.join(repeated)}；"
                f"applicant {self.id} lists a school more than once: {', '.join(repeated)}"
            )
        priorities: dict[str, tuple[int, ...]] = {}
        for school, priority in self.priorities.items():
            values = tuple(priority)
            if (
                not isinstance(school, str)
                or not values
                or any(type(value) is not int for value in values)  # bool is an int subclass but not a priority
            ):
                raise PlacementInputError(
                    f"申请 {self.id} 在学校 {school!r} 的优先级必须是非空整数序列：{priority!r}；"
                    f"applicant {self.id}: the priority at school {school!r} must be a non-empty sequence of integers"
                )
            priorities[school] = values
        # Frozen: our own copies, so a caller mutating its lists or dict afterwards cannot change a published input.
        object.__setattr__(self, "choices", choices)
        object.__setattr__(self, "priorities", priorities)


@dataclass
class PlacementResult:
    """Who got which school, who waits where, and the lottery numbers that broke the ties."""

    assignment: dict[str, str | None]
    waitlists: dict[str, list[str]]
    lottery: dict[str, int] = field(repr=False)


def new_seed() -> bytes:
    """A fresh 32-byte lottery seed from the operating system's cryptographic random source."""
    return secrets.token_bytes(32)


def commitment(seed: bytes) -> str:
    """Hex SHA-256 of the seed: published before the draw, checked against the seed revealed after it."""
    return hashlib.sha256(seed).hexdigest()


def lottery_numbers(seed: bytes, applicant_ids: Iterable[str]) -> dict[str, int]:
    """Each applicant's lottery number: HMAC-SHA256(key=seed, msg=UTF-8 id), first 8 bytes as big-endian unsigned int.

    Lower numbers win ties. The numbers depend only on the seed and the id, so they do not change when other
    applicants are added or removed, and anyone with the revealed seed can recompute them.
    """
    _check_seed(seed)
    return {
        applicant_id: int.from_bytes(
            hmac.digest(seed, applicant_id.encode("utf-8"), "sha256")[:LOTTERY_NUMBER_BYTES], "big"
        )
        for applicant_id in applicant_ids
    }


def canonical_input(applicants: Iterable[Applicant], capacities: Mapping[str, int]) -> bytes:
    """The published input file: canonical UTF-8 JSON (sorted keys, no spaces, applicants sorted by id)."""
    document = {
        "applicants": [
            {
                "id": applicant.id,
                "choices": list(applicant.choices),
                "priorities": {school: list(values) for school, values in applicant.priorities.items()},
            }
            for applicant in sorted(applicants, key=lambda applicant: applicant.id)
        ],
        "capacities": dict(capacities),
    }
    return _canonical_json(document)


def input_digest(applicants: Iterable[Applicant], capacities: Mapping[str, int]) -> str:
    """Hex SHA-256 of ``canonical_input``: published with the seed commitment before the draw."""
    return hashlib.sha256(canonical_input(applicants, capacities)).hexdigest()


def assignment_digest(result: PlacementResult) -> str:
    """Hex SHA-256 of the assignment as canonical JSON ({applicant id: school id or null}, sorted keys, no spaces)."""
    return hashlib.sha256(_canonical_json(result.assignment)).hexdigest()


def parse_input(document: object) -> tuple[list[Applicant], dict[str, int]]:
    """Applicants and capacities from a decoded published input document (see the module docstring)."""
    if not isinstance(document, Mapping):
        raise PlacementInputError("输入必须是 JSON 对象；the input must be a JSON object")
    raw_applicants = document.get("applicants")
    raw_capacities = document.get("capacities")
    if not isinstance(raw_applicants, list) or not isinstance(raw_capacities, Mapping):
        raise PlacementInputError(
            "输入必须包含 applicants 列表和 capacities 对象；the input needs an applicants list and a capacities object"
        )
    applicants = []
    for raw in raw_applicants:
        if (
            not isinstance(raw, Mapping)
            or not isinstance(raw.get("id"), str)
            or not isinstance(raw.get("choices"), list)
            or not isinstance(raw.get("priorities"), Mapping)
            or not all(isinstance(values, list) for values in raw["priorities"].values())
        ):
            raise PlacementInputError(
                f"申请记录格式不对（需要 id、choices 列表、priorities 对象）：{raw!r}；"
                "an applicant needs an id, a choices list and a priorities object of integer lists"
            )
        applicants.append(Applicant(id=raw["id"], choices=tuple(raw["choices"]), priorities=raw["priorities"]))
    capacities = dict(raw_capacities)
    _check_capacities(capacities)
    return applicants, capacities


def load_input(path: str | Path) -> tuple[list[Applicant], dict[str, int]]:
    """Applicants and capacities from a published input file."""
    try:
        document = json.loads(Path(path).read_bytes())
    except json.JSONDecodeError as error:
        raise PlacementInputError(f"输入文件不是有效的 JSON：{error}；the input file is not valid JSON") from None
    return parse_input(document)


def place(applicants: Sequence[Applicant], capacities: Mapping[str, int], seed: bytes) -> PlacementResult:
    """Place applicants by student-proposing deferred acceptance, ties broken by the seed's lottery numbers."""
    _check_capacities(capacities)
    _check_applicants(applicants, capacities)
    lottery = lottery_numbers(seed, (applicant.id for applicant in applicants))

    school_ids = list(capacities)
    school_index = {school: index for index, school in enumerate(school_ids)}
    seats = [capacities[school] for school in school_ids]

    # Applicants in lottery order (id breaks the astronomically unlikely equal numbers), so that a stable sort of
    # each school's list by priority alone leaves the lottery deciding within equal priorities.
    by_lottery = sorted(range(len(applicants)), key=lambda index: (lottery[applicants[index].id], applicants[index].id))
    eligible_at: list[list[tuple[tuple[int, ...], int, int]]] = [[] for _ in school_ids]
    schools_of: list[list[int]] = [[] for _ in applicants]
    for applicant_index in by_lottery:
        applicant = applicants[applicant_index]
        priorities = applicant.priorities
        schools = schools_of[applicant_index]
        for school_id in applicant.choices:
            priority = priorities.get(school_id)
            if priority is not None:
                school = school_index[school_id]
                eligible_at[school].append((priority, applicant_index, len(schools)))
                schools.append(school)

    # rank_at[a][k]: the rank (0 = best) of applicant a at their k-th eligible choice; order[s][r]: who has rank r.
    rank_at: list[list[int]] = [[0] * len(schools) for schools in schools_of]
    order: list[list[int]] = []
    first = itemgetter(0)
    for entries in eligible_at:
        entries.sort(key=first)
        for rank, (_, applicant_index, position) in enumerate(entries):
            rank_at[applicant_index][position] = rank
        order.append([applicant_index for _, applicant_index, _ in entries])
    del eligible_at

    held = _deferred_acceptance(schools_of, rank_at, order, seats)

    assignment: dict[str, str | None] = {applicant.id: None for applicant in applicants}
    # Index in the applicant's eligible choices of the school they end up at (or past the end when unplaced).
    final_position = [len(schools) for schools in schools_of]
    for school, heap in enumerate(held):
        for negated_rank in heap:
            applicant_index = order[school][-negated_rank]
            assignment[applicants[applicant_index].id] = school_ids[school]
            final_position[applicant_index] = schools_of[applicant_index].index(school)

    waiting_ranks: list[list[int]] = [[] for _ in school_ids]
    for applicant_index, schools in enumerate(schools_of):
        ranks = rank_at[applicant_index]
        for position in range(final_position[applicant_index]):
            waiting_ranks[schools[position]].append(ranks[position])
    waitlists = {}
    for school, ranks in enumerate(waiting_ranks):
        ranks.sort()
        waitlists[school_ids[school]] = [applicants[order[school][rank]].id for rank in ranks]

    return PlacementResult(assignment=assignment, waitlists=waitlists, lottery=lottery)


def _deferred_acceptance(
    schools_of: list[list[int]], rank_at: list[list[int]], order: list[list[int]], seats: list[int]
) -> list[list[int]]:
    """Per school, a heap of the negated ranks it holds at the end of student-proposing deferred acceptance."""
    held: list[list[int]] = [[] for _ in seats]
    next_choice = [0] * len(schools_of)
    for applicant_index in range(len(schools_of)):
        proposer = applicant_index
        # One applicant at a time (McVitie–Wilson): a displaced applicant proposes on at once. The outcome is the
        # same student-optimal stable matching as the round-by-round algorithm.
        while proposer >= 0:
            schools = schools_of[proposer]
            ranks = rank_at[proposer]
            position = next_choice[proposer]
            displaced = -1
            while position < len(schools):
                school = schools[position]
                rank = ranks[position]
                position += 1
                heap = held[school]
                if len(heap) < seats[school]:
                    heappush(heap, -rank)
                    break
                if heap and heap[0] < -rank:  # heap[0] is minus the rank of the weakest applicant held
                    displaced = order[school][-heapreplace(heap, -rank)]
                    break
            next_choice[proposer] = position
            proposer = displaced
    return held


def _check_seed(seed: bytes) -> None:
    if not isinstance(seed, bytes) or len(seed) < MINIMUM_SEED_BYTES:
        # A short seed could be found from its published commitment by trying every value before the draw.
        raise PlacementInputError(
            f"抽签种子必须至少 {MINIMUM_SEED_BYTES} 字节（new_seed() 生成 32 字节）；"
            f"the lottery seed must be at least {MINIMUM_SEED_BYTES} bytes (new_seed() gives 32)"
        )


def _check_capacities(capacities: Mapping[str, int]) -> None:
    for school, seats in capacities.items():
        if not isinstance(school, str) or not school:
            raise PlacementInputError(f"学校编号必须是非空字符串：{school!r}；school ids must be non-empty strings")
        if type(seats) is not int or seats < 0:
            raise PlacementInputError(
                f"学校 {school} 的学位数必须是非负整数：{seats!r}；"
                f"seats of school {school} must be a non-negative integer, got {seats!r}"
            )


def _check_applicants(applicants: Sequence[Applicant], capacities: Mapping[str, int]) -> None:
    seen: set[str] = set()
    for applicant in applicants:
        if applicant.id in seen:
            raise PlacementInputError(f"申请编号重复：{applicant.id}；duplicate applicant id: {applicant.id}")
        seen.add(applicant.id)
        unknown = [school for school in (*applicant.choices, *applicant.priorities) if school not in capacities]
        if unknown:
            raise PlacementInputError(
                f"申请 {applicant.id} 引用了不参加本次招生的学校：{', '.join(sorted(set(unknown)))}；"
                f"applicant {applicant.id} refers to schools without a capacity: {', '.join(sorted(set(unknown)))}"
            )


def _canonical_json(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``verify INPUT.json SEED_HEX`` re-runs a published draw and prints its digests."""
    parser = argparse.ArgumentParser(
        prog="python -m enrollment.admission.placement", description="Re-run a published school placement draw."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="re-run a published draw and print the digests to compare")
    verify.add_argument("input", type=Path, help="the published input file (JSON)")
    verify.add_argument("seed", help="the revealed seed, hex")
    arguments = parser.parse_args(argv)

    try:
        seed = bytes.fromhex(arguments.seed)
    except ValueError:
        print("种子不是有效的十六进制；the seed is not valid hex", file=sys.stderr)
        return 2
    try:
        applicants, capacities = load_input(arguments.input)
        result = place(applicants, capacities, seed)
    except (OSError, PlacementInputError) as error:
        print(error, file=sys.stderr)
        return 2
    placed = sum(school is not None for school in result.assignment.values())
    print(f"input digest: {input_digest(applicants, capacities)}")
    print(f"seed commitment: {commitment(seed)}")
    print(f"assignment digest: {assignment_digest(result)}")
    print(f"placed: {placed} of {len(applicants)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
