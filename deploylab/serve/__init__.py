"""From engine to service: Ray Serve online serving with dynamic batching (:mod:`.app`), a load
tester (:mod:`.loadtest`), Ray Data batch inference (:mod:`.batch_infer`) and NVIDIA Triton model
repositories (:mod:`.triton`). Request parsing and answers (:mod:`.requests`) need no Ray.

Ray is imported only inside the functions that use it, so ``import deploylab.serve`` is cheap.
"""
