"""The pure parts of the processors, without EPICS: the statistics window, the amplitude
spectrum and the PID control law."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emd_processors import PidState, SampleWindow, amplitude_spectrum, pid_step

# -- SampleWindow ---------------------------------------------------------------------------------


def test_count_window_keeps_the_newest_samples():
    window = SampleWindow(max_count=3)
    assert window.statistics().count == 0 and math.isnan(window.statistics().mean)
    for t, value in enumerate([5.0, 1.0, 2.0, 3.0]):
        window.add(float(t), value)
    stats = window.statistics()
    assert (stats.count, stats.mean, stats.minimum, stats.maximum) == (3, 2.0, 1.0, 3.0)
    assert stats.std == pytest.approx(np.std([1, 2, 3]))
    window.clear()
    assert len(window) == 0


def test_time_window_is_relative_to_the_newest_timestamp():
    window = SampleWindow(max_age=5.0)
    for t, value in [(100.0, 1.0), (103.0, 2.0), (104.0, 3.0)]:
        window.add(t, value)
    assert window.statistics().count == 3
    window.add(106.0, 4.0)  # 100 is now more than 5 s older than the newest
    assert window.statistics()[:2] == (3, 3.0)
    window.add(100.5, 100.0)  # too old on arrival
    assert window.statistics()[:2] == (3, 3.0)
    window.add(102.0, 10.0)  # out of order but inside the window
    assert window.statistics()[:2] == (4, 4.75)
    window.add(107.5, 5.0)  # 102 falls out although it arrived after 103 and 104
    assert window.statistics()[:2] == (4, 3.5)


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(-1e6, 1e6)), min_size=1, max_size=50),
       st.integers(1, 10), st.sampled_from([0.0, 1.0, 10.0]))
@settings(max_examples=300, deadline=None)
def test_window_statistics_match_numpy(samples, count, age):
    window = SampleWindow(max_count=count, max_age=age)
    for t, value in samples:
        window.add(t, value)
    if age:
        newest = max(t for t, _ in samples)
        # Kept: within `age` of the newest, unless already too old when it arrived.
        kept, seen_newest = [], -math.inf
        for t, value in samples:
            if t >= seen_newest - age:
                kept.append((t, value))
            seen_newest = max(seen_newest, t)
        expected = [value for t, value in kept if t >= newest - age]
    else:
        expected = [value for _, value in samples[-count:]]
    stats = window.statistics()
    assert stats.count == len(expected)
    assert stats.mean == pytest.approx(np.mean(expected), rel=1e-9, abs=1e-6)
    assert stats.std == pytest.approx(np.std(expected), rel=1e-6, abs=1e-6)
    assert (stats.minimum, stats.maximum) == (min(expected), max(expected))


# -- amplitude_spectrum ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [64, 65])
@pytest.mark.parametrize("window", ["none", "hann"])
def test_spectrum_shows_a_sines_amplitude_and_frequency(n, window):
    rate, bin_ = 100.0, 8
    frequency_of_sine = bin_ * rate / n
    t = np.arange(n) / rate
    magnitude, frequency = amplitude_spectrum(0.5 + 2.0 * np.sin(2 * np.pi * frequency_of_sine * t), rate, window)
    assert len(magnitude) == len(frequency) == n // 2 + 1
    assert frequency == pytest.approx(np.fft.rfftfreq(n, 1 / rate))
    assert int(np.argmax(magnitude[1:])) + 1 == bin_
    assert magnitude[bin_] == pytest.approx(2.0, rel=1e-3)
    assert magnitude[0] == pytest.approx(0.5, rel=1e-3)


def test_spectrum_nyquist_bin_is_not_doubled():
    samples = np.array([1.0, -1.0] * 8)  # a cosine at exactly the Nyquist frequency, amplitude 1
    magnitude, frequency = amplitude_spectrum(samples, 10.0)
    assert frequency[-1] == 5.0 and magnitude[-1] == pytest.approx(1.0)


# -- pid_step -------------------------------------------------------------------------------------


def settings_(**overrides) -> SimpleNamespace:
    return SimpleNamespace(**{"kp": 1.0, "ki": 0.0, "kd": 0.0, "output_min": -100.0, "output_max": 100.0,
                              "rate_limit": 0.0, **overrides})


def test_proportional_integral_and_derivative_terms():
    gains = settings_(kp=2.0, ki=0.5, kd=0.25)
    first = pid_step(gains, PidState(), setpoint=10.0, measured=4.0, time=100.0, now=0.0)
    assert first.error == 6.0 and first.output == 12.0  # no dt yet: P only
    second = pid_step(gains, first.state, setpoint=10.0, measured=6.0, time=102.0, now=2.0)
    # P = 2 * 4; I = 0.5 * 4 * 2 s; D = -0.25 * (6 - 4) / 2 s (on the measurement)
    assert second.output == pytest.approx(8.0 + 4.0 - 0.25)
    assert second.state.integral == pytest.approx(4.0)


def test_no_derivative_kick_when_the_setpoint_jumps():
    gains = settings_(kp=0.0, kd=10.0)
    state = pid_step(gains, PidState(), setpoint=0.0, measured=1.0, time=0.0, now=0.0).state
    assert pid_step(gains, state, setpoint=50.0, measured=1.0, time=1.0, now=1.0).output == 0.0


def test_output_limits_and_anti_windup():
    gains = settings_(kp=0.1, ki=1.0, output_min=0.0, output_max=10.0)
    state = PidState()
    for t in range(1, 100):  # a large error for a long time: saturated at 10
        step = pid_step(gains, state, setpoint=50.0, measured=0.0, time=float(t), now=float(t))
        state = step.state
    assert step.output == 10.0
    # The integral grew only as far as the output could follow (10 - P), not to thousands.
    assert state.integral == pytest.approx(10.0 - 0.1 * 50.0)
    # So once the measurement overshoots, the output leaves the limit at once.
    step = pid_step(gains, state, setpoint=50.0, measured=60.0, time=100.0, now=100.0)
    assert step.output < 5.0


def test_negative_saturation_does_not_wind_up_either():
    gains = settings_(kp=0.0, ki=1.0, output_min=-1.0, output_max=1.0)
    state = PidState()
    for t in range(1, 50):
        state = pid_step(gains, state, setpoint=-100.0, measured=0.0, time=float(t), now=float(t)).state
    assert state.integral == -1.0
    assert pid_step(gains, state, setpoint=100.0, measured=0.0, time=50.0, now=50.0).output == 1.0


def test_rate_limit_follows_real_time_and_the_limits_win():
    gains = settings_(kp=100.0, rate_limit=2.0, output_min=0.0, output_max=50.0)
    state = PidState(output=10.0, written_at=0.0)  # the actuator is at 10
    step = pid_step(gains, state, setpoint=1.0, measured=0.0, time=0.0, now=0.5)
    assert step.output == pytest.approx(11.0)  # 2 per second for 0.5 s
    step = pid_step(gains, step.state, setpoint=-1.0, measured=0.0, time=1.0, now=1.5)
    assert step.output == pytest.approx(9.0)
    # After a pause the change counts at most max_rate_interval (default 1 s), not the pause.
    after_pause = pid_step(gains, step.state, setpoint=1.0, measured=0.0, time=2.0, now=61.5)
    assert after_pause.output == pytest.approx(11.0)
    assert pid_step(gains, step.state, setpoint=1.0, measured=0.0, time=2.0, now=61.5,
                    max_rate_interval=5.0).output == pytest.approx(19.0)
    outside = PidState(output=80.0, written_at=0.0)  # beyond output_max: the limit wins
    assert pid_step(gains, outside, setpoint=1.0, measured=0.0, time=0.0, now=0.1).output == 50.0


def test_backwards_timestamps_add_no_integral():
    gains = settings_(kp=0.0, ki=1.0)
    state = pid_step(gains, PidState(), setpoint=1.0, measured=0.0, time=10.0, now=0.0).state
    step = pid_step(gains, state, setpoint=1.0, measured=0.0, time=5.0, now=1.0)
    assert step.state.integral == 0.0 and step.output == 0.0


@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(0.001, 10)), min_size=1, max_size=40),
       st.floats(-10, 10), st.floats(0, 10), st.floats(0, 10), st.floats(0, 50))
@settings(max_examples=300, deadline=None)
def test_output_always_within_limits_and_rate(measurements, kp, ki, kd, rate):
    gains = settings_(kp=kp, ki=ki, kd=kd, rate_limit=rate, output_min=-5.0, output_max=5.0)
    state, t = PidState(output=0.0, written_at=0.0), 0.0
    for measured, dt in measurements:
        t += dt
        step = pid_step(gains, state, setpoint=1.0, measured=measured, time=t, now=t)
        assert -5.0 <= step.output <= 5.0 and -5.0 <= step.state.integral <= 5.0
        if rate:
            assert abs(step.output - state.output) <= rate * min(dt, 1.0) + 1e-9
        state = step.state
