"""estate/ports.py: the local estate's ports, optionally confined to a range of one's own (parallel test workers
each get one in tests/conftest.py, so two workers never hand out the same port)."""

import socket

import pytest

from mqtt_estate.estate import ports


def test_ports_stay_in_the_range_and_skip_taken_and_bound_ones(monkeypatch):
    monkeypatch.setenv(ports.RANGE_VARIABLE, "21000-21009")
    held = socket.socket()
    held.bind(("0.0.0.0", 21000))
    try:
        taken: set[int] = set()
        got = [ports.free_port(taken) for _ in range(5)]
    finally:
        held.close()
    assert all(21001 <= p <= 21009 for p in got) and len(set(got)) == 5 and set(got) == taken


@pytest.mark.parametrize("text", ["21000", "x-y", "30000-20000", "80-90", "60000-70000"])
def test_a_bad_range_is_one_line(monkeypatch, text):
    monkeypatch.setenv(ports.RANGE_VARIABLE, text)
    with pytest.raises(ValueError, match=f"{ports.RANGE_VARIABLE}=.*expected <low>-<high>"):
        ports.free_port()


def test_without_a_range_the_kernel_picks(monkeypatch):
    monkeypatch.delenv(ports.RANGE_VARIABLE, raising=False)
    assert 1024 <= ports.free_port() <= 65535


def test_a_port_is_not_handed_out_twice_to_different_callers(monkeypatch):
    """The estate's own ports (with their `taken` set) and its moto_server's (without one) come from the same
    range: a port handed out to one is not handed to the other before it is bound (a CI run lost a broker's
    listener to its estate's moto_server that way)."""
    monkeypatch.setenv(ports.RANGE_VARIABLE, "21100-21119")
    planned = {ports.free_port(set()) for _ in range(10)}
    others = {ports.free_port() for _ in range(10)}
    assert len(planned) == 10 and len(others) == 10 and not planned & others
