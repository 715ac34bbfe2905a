from pytake_common.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "contacts"
    port: int = 8003
