"""The embedder: each round, reset a pretrained encoder, train a head on the labels so far, embed the pool.

- :mod:`aloe.embedder.backbones`: open_clip and timm encoders behind :class:`~aloe.embedder.backbones.Backbone`;
- :mod:`aloe.embedder.transforms`: loader-side resize/crop/augmentation to uint8 tensors;
- :mod:`aloe.embedder.finetune`: end-to-end fine-tuning with a new linear head (``finetune`` mode);
- :mod:`aloe.embedder.head`, :mod:`aloe.embedder.linear_round`: the head on fixed features (``linear`` mode);
- :mod:`aloe.embedder.poolpass`: the streamed pool pass into a store writer;
- :mod:`aloe.embedder.checkpoint`: fine-tuned weights kept until their round commits (resume);
- :mod:`aloe.embedder.round`: one round end to end (:func:`~aloe.embedder.round.embed_round`);
- :mod:`aloe.embedder.cli`: ``aloe-embed``.
"""
