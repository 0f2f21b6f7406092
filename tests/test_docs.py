"""Generated docs stay in step with the code."""

from cctv import config_docs


def test_configuration_reference_is_up_to_date():
    assert config_docs.main(["--check"]) == 0, "run: python -m cctv.config_docs"
