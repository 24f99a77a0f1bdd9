"""dns411: keeps dnsmasq and Route 53 records in step with the Unify catalog.

Pure core: :mod:`.names`, :mod:`.model`, :mod:`.static`, :mod:`.desired`, :mod:`.render`,
:mod:`.plan`. Shell: :mod:`.apply` (dnsmasq files and process, Route 53 API),
:mod:`.reconciler`, :mod:`.service`, :mod:`.cli`.
"""


def cli_list(argv: list[str] | None = None) -> int:
    """``unify dns list`` entry: print records as a table (or ``--json``); see :mod:`.cli`."""
    from .cli import list_main

    return list_main(argv)
