"""The recorder's world beyond file names: the start-request profile and the storage vendors' endpoints.
Imports only ``pipeline.model``."""
