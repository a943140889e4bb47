"""Label Studio: the batch as tasks with images that show, reading its exports, push and pull over its API.

- :mod:`~aloe.loop.labelstudio.tasks`: tasks and the open-world labeling interface;
- :mod:`~aloe.loop.labelstudio.images`: the batch's images written out, local-files URLs;
- :mod:`~aloe.loop.labelstudio.exports`: labels from the JSON, JSON-MIN and CSV exports;
- :mod:`~aloe.loop.labelstudio.client`: a small REST client (standard library only);
- :mod:`~aloe.loop.labelstudio.sync`: ``aloe labels push`` and ``pull``.
"""
