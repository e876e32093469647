"""The ``kind: vcenter`` source: one vSphere session through pyVmomi.

- ``session``: the session lifecycle, the full read and turning answers into changes;
- ``feeds``: one PropertyCollector, filter and long-poll thread per object kind (why: see
  its docstring; in short, vcsim's cost per update grows with the filters per collector);
- ``wire``: ``WaitForUpdatesEx`` on a connection of the feed's own, and a fast reader
  for the VM feeds' simple values;
- ``inventory``: the properties last seen per object, rebuilt into model objects, and
  what was last emitted;
- ``mapping``: pure vSphere value -> model value functions;
- ``tags``: VM tags from the vSphere Automation REST API, on a timer (no events exist).

What a VM carries: host, power state and port groups (``network``), and for the intents
beyond autovlan its guest addresses and MACs (``guest.net``, from VMware Tools), guest OS
(``config.guestId``), folder path (``/Datacenter/vm/Folder``), cluster (its host's),
custom attributes (``customValue`` named through the CustomFieldsManager) and tags
(``category:tag``).
"""

from vmfabric.sources.vcenter.session import VcenterSource

__all__ = ["VcenterSource"]
