from pytake_common.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "tenants"
    port: int = 8002
