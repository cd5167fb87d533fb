from django.apps import AppConfig


class ProtocolsConfig(AppConfig):
    name = "mriplatform.protocols"
    label = "protocols"
