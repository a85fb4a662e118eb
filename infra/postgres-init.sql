-- Databases beside the default one (mlflow): MLflow's auth store and Prefect's metadata.
CREATE DATABASE mlflow_auth;
CREATE DATABASE prefect;
