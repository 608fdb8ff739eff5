"""A sample vendor app (示例第三方应用) integrating with the city platform through its public contracts."""
