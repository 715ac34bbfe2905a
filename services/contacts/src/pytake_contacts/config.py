from pytake_common.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "contacts"
    port: int = 8003
    #: Largest CSV accepted by ``POST /v1/contacts/import`` (streamed to a temporary file).
    import_max_bytes: int = 64 * 1024 * 1024
