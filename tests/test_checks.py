"""The shared argument checks: what passes, and errors that name the argument, the form and the value."""

import numpy as np
import pytest

from spacetime.checks import (
    fraction,
    int_at_least,
    int_in,
    int_tuple,
    is_int,
    is_number,
    number_in,
    one_of,
    positive_int,
)


def test_bools_are_neither_ints_nor_numbers_and_numpy_scalars_are():
    assert is_int(3) and is_int(np.int64(3)) and not is_int(True) and not is_int(3.0) and not is_int(np.bool_(1))
    assert is_number(2.5) and is_number(np.float32(1)) and is_number(4) and not is_number(False)
    assert not is_number("1")


def test_integer_checks_return_the_value_and_name_it_when_wrong():
    assert positive_int("frames", 8) == 8 and positive_int("n", None, none_ok=True) is None
    assert int_at_least("radius", 0, 0) == 0 and int_in("context", 2, 0, 8) == 2
    with pytest.raises(ValueError, match=r"^frames must be a positive int; got 0$"):
        positive_int("frames", 0)
    with pytest.raises(ValueError, match=r"^frames must be a positive int; got True$"):
        positive_int("frames", True)
    with pytest.raises(ValueError, match=r"^num_videos must be a positive int or None \(fresh\); got 2.0$"):
        positive_int("num_videos", 2.0, none_ok=True, note=" (fresh)")
    with pytest.raises(ValueError, match=r"^radius must be an int >= 0; got -1$"):
        int_at_least("radius", -1, 0)
    with pytest.raises(ValueError, match=r"^context must be an int in \[0, T=4\); got 4$"):
        int_in("context", 4, 0, 4, high_label="T=4")


def test_number_checks_state_their_bounds():
    assert number_in("lr", 1e-3, 0, low_open=True) == 1e-3 and number_in("t", None, 0, none_ok=True) is None
    assert fraction("p", 0) == 0 and fraction("p", 1) == 1
    cases = [
        (lambda: number_in("lr", 0, 0, low_open=True), r"lr must be a number > 0; got 0"),
        (lambda: number_in("decay", 1, 0, 1, high_open=True), r"decay must be a number in \[0, 1\); got 1"),
        (lambda: number_in("x", float("nan"), 0), r"x must be a number >= 0; got nan"),
        (lambda: number_in("x", 5, high=4), r"x must be a number <= 4; got 5"),
        (lambda: number_in("x", "2", 0), r"x must be a number >= 0; got '2'"),
        (lambda: fraction("p", 2), r"p must be a fraction in \[0, 1\]; got 2"),
        (lambda: fraction("p", 1, open_ends=True), r"p must be a fraction in \(0, 1\); got 1"),
        (lambda: fraction("m", 0.75, 0.5, high_label="1 - c=0.5"), r"m must be a fraction in \[0, 1 - c=0.5\]; got 0.75"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match="^" + message + "$"):
            call()


def test_choices_and_tuples():
    assert one_of("kind", "a", ("a", "b")) == "a" and one_of("kind", None, ("a",), none_ok=True) is None
    with pytest.raises(ValueError, match=r"^kind must be one of \('a', 'b'\); got 'c'$"):
        one_of("kind", "c", ["a", "b"])
    with pytest.raises(ValueError, match=r"^preset must be None or one of \('x', 'y'\); got 'z'$"):
        one_of("preset", "z", {"y": 1, "x": 2}, none_ok=True)  # a dict's keys, sorted
    assert int_tuple("size", 2, 3) == (2, 2, 2) and int_tuple("size", [1, 2, 3], 3) == (1, 2, 3)
    assert int_tuple("shift", (0, 1, 0), 3, low=0) == (0, 1, 0)
    for bad in ((2, 7), (0, 7, 7), 2.0, "abc", (1, True, 2)):
        with pytest.raises(ValueError, match=r"^window must be an int or 3 ints \(wT, wH, wW\), each >= 1; got"):
            int_tuple("window", bad, 3, axes="(wT, wH, wW)")


def test_float_tensor_names_the_form():
    import torch

    from spacetime.checks import float_tensor

    x = torch.zeros(2, 3)
    assert float_tensor("x", x, 2) is x
    with pytest.raises(TypeError, match=r"^q must be a torch.Tensor \(a \(b, n\) tensor\); got list$"):
        float_tensor("q", [1.0], 2, form="a (b, n) tensor")
    with pytest.raises(ValueError, match=r"^q must be a \(b, n\) tensor; got 1 dims \(3,\)$"):
        float_tensor("q", torch.zeros(3), 2, form="a (b, n) tensor")
    with pytest.raises(ValueError, match=r"^q must be floating point; got dtype torch.int64$"):
        float_tensor("q", torch.zeros(3, dtype=torch.long))
