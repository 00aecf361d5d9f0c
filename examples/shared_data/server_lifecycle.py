from app_server import shared

from .data import load_prices


def on_server_loaded(server_context):
    # load before the first visitor arrives; sessions then share this one DataFrame
    shared["prices"] = load_prices()
