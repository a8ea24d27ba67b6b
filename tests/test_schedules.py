import functools

import pytest

from cycl_bench.quant.schedules import (
    ConstantSchedule,
    CosineCycleSchedule,
    cosine_cycle_bits,
    mean_bits,
    time_shares,
)


def test_constant_schedule_returns_its_bits_at_every_step():
    schedule = ConstantSchedule(bits=3)
    assert {schedule(step) for step in range(50)} == {3}


def test_cosine_cycle_starts_at_min_and_climbs_to_max_within_each_period():
    schedule = CosineCycleSchedule(total_steps=800, min_bits=2, max_bits=6, cycles=8)
    first_cycle = [schedule(step) for step in range(100)]
    assert first_cycle[0] == 2
    assert first_cycle[-1] == 6
    assert first_cycle == sorted(first_cycle)
    assert schedule(100) == 2  # next cycle starts over
    assert [schedule(step) for step in range(100, 200)] == first_cycle


def test_cosine_cycle_values_at_known_points_of_a_cycle():
    # 2 to 6 bits, 100-step cycles: bits = 2 + 2 * (1 - cos(pi * x)) at phase x of the cycle
    bits = functools.partial(cosine_cycle_bits, total_steps=800, min_bits=2, max_bits=6, cycles=8)
    assert bits(0) == 2  # x = 0: cos 0 = 1
    assert bits(25) == 3  # x = 1/4: 2 + 2 * (1 - 0.7071) = 2.59
    assert bits(50) == 4  # x = 1/2: cos = 0, the middle of the range
    assert bits(75) == 5  # x = 3/4: 2 + 2 * 1.7071 = 5.41
    assert bits(99) == 6  # x = 0.99: 2 + 2 * 1.9995 = 6.00
    assert bits(100) == 2  # the next cycle starts over
    assert bits(125) == 3


def test_cosine_cycle_bits_of_a_small_run_written_out():
    # 1 to 3 bits, 8 steps, 2 cycles of 4 steps: phases 0, 1/4, 1/2, 3/4 give
    # 1 + (1 - cos) = 1, 1.29, 2, 2.71
    bits = [cosine_cycle_bits(t, total_steps=8, min_bits=1, max_bits=3, cycles=2) for t in range(8)]
    assert bits == [1, 1, 2, 3, 1, 1, 2, 3]


def test_cosine_cycle_rounds_half_to_even_as_numpy_rint():
    # the middle of the cycle (x = 1/2) is exactly min + (max - min) / 2
    assert cosine_cycle_bits(2, total_steps=4, min_bits=2, max_bits=3, cycles=1) == 2  # 2.5
    assert cosine_cycle_bits(2, total_steps=4, min_bits=3, max_bits=4, cycles=1) == 4  # 3.5


@pytest.mark.parametrize(
    "min_bits, max_bits, cycles, total_steps",
    [(2, 6, 8, 800), (1, 8, 3, 300), (2, 4, 5, 1000), (4, 4, 2, 64)],
)
def test_cosine_cycle_properties(min_bits, max_bits, cycles, total_steps):
    """Within [min, max], periodic with period total/cycles, climbing within each cycle, reaching
    min at its start and max before its end."""
    period = total_steps // cycles
    bits = [
        cosine_cycle_bits(
            t, total_steps=total_steps, min_bits=min_bits, max_bits=max_bits, cycles=cycles
        )
        for t in range(total_steps)
    ]
    assert min(bits) == min_bits and max(bits) == max_bits
    assert all(bits[t] == bits[t % period] for t in range(total_steps))
    one_cycle = bits[:period]
    assert one_cycle == sorted(one_cycle)
    assert one_cycle[0] == min_bits and one_cycle[-1] == max_bits


def test_time_shares_of_two_to_six_bits_over_eight_cycles():
    schedule = CosineCycleSchedule(total_steps=80_000, min_bits=2, max_bits=6, cycles=8)
    shares = time_shares(schedule, 80_000)
    expected = {2: 0.23, 3: 0.19, 4: 0.16, 5: 0.19, 6: 0.23}
    assert shares.keys() == expected.keys()
    for bits, share in expected.items():
        assert shares[bits] == pytest.approx(share, abs=0.005)
    assert mean_bits(schedule, 80_000) == pytest.approx(4.0, abs=0.01)


def test_exact_step_counts_of_one_hundred_step_cycles():
    # bits change where 2 + 2 * (1 - cos(pi * x)) crosses 2.5, 3.5, 4.5, 5.5: at x = 0.23005,
    # 0.41957, 0.58043, 0.76995 of the period, so steps 0-23 | 24-41 | 42-58 | 59-76 | 77-99
    schedule = CosineCycleSchedule(total_steps=800, min_bits=2, max_bits=6, cycles=8)
    shares = time_shares(schedule, 800)
    assert {bits: round(share * 800) for bits, share in shares.items()} == {
        2: 192,
        3: 144,
        4: 136,
        5: 144,
        6: 184,
    }


def test_closing_phase_trains_the_last_steps_at_the_closing_bits():
    schedule = CosineCycleSchedule(
        total_steps=1000, min_bits=2, max_bits=6, cycles=8, closing_fraction=0.2, closing_bits=1
    )
    assert schedule.closing_steps == 200
    assert {schedule(step) for step in range(800, 1000)} == {1}
    cycling = [schedule(step) for step in range(800)]
    assert min(cycling) == 2 and max(cycling) == 6
    assert cycling[:100] == [schedule(step) for step in range(100, 200)]  # 8 cycles in 800 steps


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_bits": 6, "max_bits": 2},
        {"cycles": 0},
        {"total_steps": 0},
        {"closing_fraction": 1.0},
    ],
)
def test_invalid_cycles_are_refused(kwargs):
    arguments = {"total_steps": 100, "min_bits": 2, "max_bits": 6, "cycles": 8} | kwargs
    with pytest.raises(ValueError):
        CosineCycleSchedule(**arguments)
