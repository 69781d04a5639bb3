"""The MCP server: tools that let an agent boot guests, run commands and check claims."""
