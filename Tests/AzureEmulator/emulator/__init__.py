"""A loopback emulator of the Azure Batch and Blob data planes, with an Entra ID
token endpoint, for testing batchd without Azure. Standard library only."""
