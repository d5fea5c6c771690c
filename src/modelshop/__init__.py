"""modelshop: from customers' text data to revenue, channel by channel."""

__version__ = "0.1.0"
