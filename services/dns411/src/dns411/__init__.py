"""dns411: keeps dnsmasq and Route 53 records in step with the Unify catalog.

Pure core: :mod:`.names`, :mod:`.model`, :mod:`.static`, :mod:`.desired`, :mod:`.render`,
:mod:`.plan`. Shell: :mod:`.apply` (dnsmasq files and process, Route 53 API),
:mod:`.reconciler`, :mod:`.service`, :mod:`.listing` (the state it publishes for ``unify dns
list``), :mod:`.cli`.
"""

