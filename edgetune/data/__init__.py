"""Images on disk: labelled folders found and split, target-domain folders, the demo data,
and the bounded reader everything after training streams through. Torch-free."""
