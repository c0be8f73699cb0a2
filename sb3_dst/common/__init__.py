"""Code shared by the DST algorithms: the topology engine, masks, policies' sparsification and the callback."""
