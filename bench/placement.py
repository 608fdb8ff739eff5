"""Admission placement benchmark: our deferred acceptance against the ``matching`` library on the same instance.

A reproducible district (fixed instance seed): 500 schools, 100,000 applicants with 1–5 choices each. Popularity is
skewed (log-normal attractiveness, so a few schools are heavily oversubscribed while others have seats left); public
schools belong to zones of 1–3 schools and rank their zone's applicants by four categories (household and property
match, household only, property only, migrant with residence permit) with a registration-date tie-break; some public
schools also take out-of-zone applicants in a fifth category; private schools (公民同招) admit district-wide by lottery
only; one choice in twenty is a school where the family is not eligible.

Figures: ``place`` time (median of 3) and its peak Python allocations (tracemalloc, a separate untimed run); then the
``matching`` library's ``HospitalResident`` (resident-optimal) on the same preferences, timed from
``create_from_dictionaries`` to the end of ``solve``, and whether both assignments are identical (exit 1 if not).
The library did not finish 100,000 applicants in 15 minutes (see RESULTS.md), so by default it gets a district of the
same shape with 40,000 applicants and 200 schools (about 90 s), on which ``place`` is timed again for the ratio.

    .venv/bin/python bench/placement.py [--applicants 100000] [--schools 500] [--library-applicants 40000]
        [--library-schools 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import os
import random
import resource
import statistics
import sys
import threading
import time
import tracemalloc
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from machine import load_average

from enrollment.admission.placement import Applicant, PlacementResult, lottery_numbers, place

INSTANCE_SEED = 20260901
DRAW_SEED = hashlib.sha256(b"admission placement bench").digest()
TARGET_SECONDS = 5.0
CATEGORY_SHARES = {1: 0.55, 2: 0.15, 3: 0.10, 4: 0.20}
OUT_OF_ZONE_CATEGORY = 5


@dataclass(frozen=True)
class District:
    applicants: list[Applicant]
    capacities: dict[str, int]


def make_district(applicant_count: int, school_count: int, seed: int = INSTANCE_SEED) -> District:
    """A district of the shape described in the module docstring, the same for the same arguments."""
    rng = random.Random(seed)
    schools = [f"S{index:04d}" for index in range(school_count)]
    private = set(rng.sample(schools, k=max(1, school_count * 15 // 100)))
    public = [school for school in schools if school not in private]
    takes_out_of_zone = {school for school in public if rng.random() < 0.3}

    zones: list[list[str]] = []
    pending = public[:]
    rng.shuffle(pending)
    while pending:
        size = min(len(pending), rng.choice((1, 1, 2, 3)))
        zones.append([pending.pop() for _ in range(size)])

    attractiveness = {school: math.exp(rng.gauss(0.0, 1.0)) for school in schools}
    # About 5 % more seats than applicants overall; private schools are smaller.
    raw_size = {school: rng.uniform(0.4, 1.0) if school in private else rng.uniform(0.6, 1.6) for school in schools}
    scale = applicant_count * 1.05 / sum(raw_size.values())
    capacities = {school: max(1, round(raw_size[school] * scale)) for school in schools}

    zone_weights = [sum(capacities[school] for school in zone) for zone in zones]
    popularity = list(itertools.accumulate(attractiveness[school] for school in schools))
    categories = list(CATEGORY_SHARES)
    category_weights = list(CATEGORY_SHARES.values())

    applicants = []
    for index in range(applicant_count):
        zone = rng.choices(zones, weights=zone_weights)[0]
        category = rng.choices(categories, weights=category_weights)[0]
        registered = rng.randrange(0, 3650) if category < 4 else 0  # days since the registration, earlier first

        def priority_at(school: str, zone: list[str] = zone, category: int = category, registered: int = registered):
            if school in private:
                return (1,)
            if school in zone:
                return (category, registered)
            if school in takes_out_of_zone:
                return (OUT_OF_ZONE_CATEGORY, category)
            return None

        wanted = rng.choices((1, 2, 3, 4, 5), weights=(10, 15, 25, 25, 25))[0]
        choices: list[str] = []
        if rng.random() < 0.6:
            choices.append(rng.choice(zone))
        attempts = 0
        while len(choices) < wanted and attempts < 50:
            attempts += 1
            school = rng.choices(schools, cum_weights=popularity)[0]
            if school in choices or (priority_at(school) is None and rng.random() > 0.05):
                continue
            choices.append(school)
        if not set(zone) & set(choices) and rng.random() < 0.85:
            # Most families keep a school of their zone as the safe last choice.
            choices = [*choices[: wanted - 1], rng.choice(zone)]
        priorities = {school: p for school in choices if (p := priority_at(school)) is not None}
        applicants.append(
            Applicant(id=f"A{index:06d}-{rng.getrandbits(32):08x}", choices=tuple(choices), priorities=priorities)
        )
    return District(applicants=applicants, capacities=capacities)


def time_place(district: District, repeat: int) -> tuple[float, PlacementResult]:
    """Median wall-clock seconds of ``place`` over ``repeat`` runs, and its result."""
    timings = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = place(district.applicants, district.capacities, DRAW_SEED)
        timings.append(time.perf_counter() - started)
    assert result is not None
    return statistics.median(timings), result


def peak_traced_megabytes(district: District) -> float:
    """Peak Python allocations while ``place`` runs (tracemalloc slows it down, so this run is not timed)."""
    tracemalloc.start()
    place(district.applicants, district.capacities, DRAW_SEED)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def library_preferences(
    district: District,
) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, int]]:
    """The instance as the ``matching`` library wants it: eligible choices only, every school ranking all who rank it.

    The library warns about (and mishandles) residents without preferences and hospitals without capacity or
    applicants, so those are left out: they cannot be placed, or place nobody, in either solver.
    """
    lottery = lottery_numbers(DRAW_SEED, (applicant.id for applicant in district.applicants))
    resident_prefs: dict[str, list[str]] = {}
    ranked_by: dict[str, list[tuple[tuple[int, ...], int, str]]] = {}
    for applicant in district.applicants:
        eligible = [
            school for school in applicant.choices if school in applicant.priorities and district.capacities[school] > 0
        ]
        if eligible:
            resident_prefs[applicant.id] = eligible
            for school in eligible:
                ranked_by.setdefault(school, []).append(
                    (applicant.priorities[school], lottery[applicant.id], applicant.id)
                )
    hospital_prefs = {school: [entry[2] for entry in sorted(entries)] for school, entries in ranked_by.items()}
    capacities = {school: district.capacities[school] for school in hospital_prefs}
    return resident_prefs, hospital_prefs, capacities


def run_library(district: District) -> tuple[float, float, dict[str, str | None]]:
    """Seconds to build the preference lists, seconds in the library, and its assignment (applicant -> school)."""
    from matching.games import HospitalResident

    started = time.perf_counter()
    resident_prefs, hospital_prefs, capacities = library_preferences(district)
    prepared = time.perf_counter()
    solved_matching = []

    def solve() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning would mean we fed it an instance it changes or rejects
            game = HospitalResident.create_from_dictionaries(resident_prefs, hospital_prefs, capacities)
            solved_matching.append(game.solve(optimal="resident"))

    # The library deep-copies its web of players recursively: at 100,000 applicants that overflows Python's
    # default recursion limit, so it runs in a thread with a large stack and a raised limit.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)
    threading.stack_size(1 << 30)
    try:
        worker = threading.Thread(target=solve)
        worker.start()
        worker.join()
    finally:
        threading.stack_size(0)
        sys.setrecursionlimit(limit)
    solved = time.perf_counter()
    if not solved_matching:
        raise SystemExit("the matching library failed (its traceback is above)")
    matching = solved_matching[0]
    assignment: dict[str, str | None] = {applicant.id: None for applicant in district.applicants}
    for hospital, residents in matching.items():
        for resident in residents:
            assignment[resident.name] = hospital.name
    return prepared - started, solved - prepared, assignment


def describe(district: District, result: PlacementResult) -> str:
    placed = sum(school is not None for school in result.assignment.values())
    first_choice = sum(
        1
        for applicant in district.applicants
        if applicant.choices and result.assignment[applicant.id] == applicant.choices[0]
    )
    choices = sum(len(applicant.choices) for applicant in district.applicants)
    seats = sum(district.capacities.values())
    full = sum(
        1 for school, seats_at in district.capacities.items() if len(result.waitlists[school]) > 0 and seats_at > 0
    )
    return (
        f"{len(district.applicants):,} applicants, {len(district.capacities)} schools, {seats:,} seats, "
        f"{choices / len(district.applicants):.2f} choices each; placed {placed:,} "
        f"({first_choice:,} at their first choice), {full} schools with a waitlist"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--applicants", type=int, default=100_000)
    parser.add_argument("--schools", type=int, default=500)
    parser.add_argument("--library-applicants", type=int, default=40_000)
    parser.add_argument("--library-schools", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args(argv)

    print(f"machine: {os.cpu_count()} CPUs, load average {load_average()}; Python {sys.version.split()[0]}")
    started = time.perf_counter()
    district = make_district(arguments.applicants, arguments.schools)
    print(f"instance seed {INSTANCE_SEED}, generated in {time.perf_counter() - started:.1f} s")

    seconds, result = time_place(district, arguments.repeat)
    print(describe(district, result))
    verdict = "PASS" if seconds < TARGET_SECONDS else "FAIL"
    print(f"place: {seconds:.2f} s (median of {arguments.repeat}); target < {TARGET_SECONDS:.0f} s: {verdict}")
    print(f"place peak Python allocations: {peak_traced_megabytes(district):.0f} MiB (tracemalloc, untimed run)")
    print(f"process max RSS so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

    if (arguments.library_applicants, arguments.library_schools) == (arguments.applicants, arguments.schools):
        library_district, ours, our_result = district, seconds, result
    else:
        library_district = make_district(arguments.library_applicants, arguments.library_schools)
        ours, our_result = time_place(library_district, arguments.repeat)
    print(f"\nside by side on {describe(library_district, our_result)}")
    preparing, solving, theirs = run_library(library_district)
    print(f"place: {ours:.3f} s (median of {arguments.repeat}, including ranking every school's applicants)")
    print(
        f"matching.HospitalResident: {solving:.3f} s (create_from_dictionaries + solve(optimal='resident'); "
        f"building its preference lists took another {preparing:.3f} s)"
    )
    print(f"ratio library / place: {solving / ours:.0f}×")
    identical = theirs == our_result.assignment
    print(f"identical: {'yes' if identical else 'no'}")
    if not identical:
        differing = [applicant for applicant, school in theirs.items() if our_result.assignment[applicant] != school]
        print(f"{len(differing)} applicants differ, for example {differing[:5]}")
        return 1
    print(f"load average at the end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
